//! The person at the terminal as the source of names and passwords.

use std::io;

use echo_client::{AuthRequest, ClientError, Credentials};
use echo_proto::{ErrorCode, Secret};

/// Asks the person at the terminal.
pub struct TerminalCredentials;

impl Credentials for TerminalCredentials {
    fn name(&mut self) -> Result<String, ClientError> {
        echo_prompt::ask_required(
            &mut io::stdin().lock(),
            &mut io::stdout(),
            "Your name",
            |s| Ok(s.to_owned()),
        )
        .map_err(ClientError::from_question)
    }

    fn choose(&mut self, suggested: Option<&str>) -> Result<AuthRequest, ClientError> {
        let (mut input, mut output) = (io::stdin().lock(), io::stdout());
        let register = echo_prompt::ask(
            &mut input,
            &mut output,
            "Log in or register? (l/r)",
            &"l".to_owned(),
            |answer| match answer.to_lowercase().as_str() {
                "l" | "login" | "log in" => Ok("l".to_owned()),
                "r" | "register" => Ok("r".to_owned()),
                _ => Err("Answer l to log in or r to register.".to_owned()),
            },
        )
        .map_err(ClientError::from_question)?
            == "r";
        let not_empty = |s: &str| Ok(s.to_owned());
        let user = match suggested {
            Some(user) if !register => {
                echo_prompt::ask(&mut input, &mut output, "User", &user.to_owned(), not_empty)
            }
            _ => echo_prompt::ask_required(&mut input, &mut output, "User", not_empty),
        }
        .map_err(ClientError::from_question)?;
        drop(input);
        let password = Secret::new(
            echo_prompt::hidden("Password", register).map_err(ClientError::from_question)?,
        );
        Ok(AuthRequest {
            register,
            user,
            password,
        })
    }

    fn refused(
        &mut self,
        code: ErrorCode,
        message: &str,
        attempts_left: Option<u32>,
    ) -> Result<(), ClientError> {
        match (code, attempts_left) {
            (_, Some(left)) => println!("{message} ({left} attempt(s) left)"),
            _ => println!("{message}"),
        }
        Ok(())
    }

    fn token_rejected(&mut self, server: &str) {
        println!("{}.", echo_client::handshake::token_rejected_text(server));
    }
}
