//! The admin commands' side of the control sockets: the live servers of a
//! data directory are the `control.PORT.sock` files something answers on.
//! A file nothing answers on (a server killed with `kill -9` leaves one) is
//! removed on the way. `clients`, `kick` and `reload` go to every live
//! server, or the one named with `--port`, and their answers are put
//! together; the store's commands go to the one server holding the store.

use std::{
    io,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use echo_proto::ext::{BlockingFrameRead, BlockingFrameWrite};

use super::{ControlError, ControlReply, ControlRequest, socket_path};
use crate::live::clients::{ClientInfo, format_table};

/// One server's answer.
type Answer = (u16, Result<String, ControlError>);
/// One live server's control connection (or why it cannot be had).
type Reached = (u16, Result<UnixStream, ControlError>);

/// Sends `request` to the servers of the data directory `dir` (only the one
/// listening on `port`, if given) and returns what to print. `clients` and
/// `kick` reach every live server; any other request needs exactly one.
pub fn request(
    dir: &Path,
    port: Option<u16>,
    request: &ControlRequest,
) -> Result<String, ControlError> {
    let servers = live_servers(dir, port)?;
    if !request.reaches_every_server() {
        let [(_, stream)] =
            <[_; 1]>::try_from(servers).map_err(|servers| ControlError::SeveralServers {
                dir: shown_dir(dir),
                ports: servers.iter().map(|(port, _)| *port).collect(),
            })?;
        return stream.and_then(|stream| exchange(stream, request));
    }
    let asked = match request {
        // Asked as JSON of every server, to be put together here.
        ControlRequest::Clients { .. } => &ControlRequest::Clients { json: true },
        other => other,
    };
    let answers: Vec<Answer> = servers
        .into_iter()
        .map(|(port, stream)| (port, stream.and_then(|stream| exchange(stream, asked))))
        .collect();
    match request {
        ControlRequest::Clients { json } => merge_clients(answers, *json),
        ControlRequest::Reload => merge_reloads(answers),
        _ => merge_texts(answers),
    }
}

/// The control connection of each live server of `dir` (or of the one on
/// `port`), by port; a server that refuses the connection (another user's)
/// is there with the error. None: [`ControlError::NoServer`].
fn live_servers(dir: &Path, port: Option<u16>) -> Result<Vec<Reached>, ControlError> {
    let ports = match port {
        Some(port) => vec![port],
        None => socket_ports(dir),
    };
    let mut servers = Vec::new();
    for port in ports {
        let path = socket_path(dir, port);
        match UnixStream::connect(&path) {
            Ok(stream) => servers.push((port, Ok(stream))),
            // Left by a server that is gone: nobody will remove it else.
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&path);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => servers.push((port, Err(ControlError::Unreachable { path, source }))),
        }
    }
    if servers.is_empty() {
        return Err(ControlError::NoServer {
            dir: shown_dir(dir),
            port,
        });
    }
    Ok(servers)
}

/// The ports of the control sockets in `dir`, lowest first.
fn socket_ports(dir: &Path) -> Vec<u16> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ports: Vec<u16> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let port = name.to_str()?.strip_prefix("control.")?;
            port.strip_suffix(".sock")?.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports
}

/// The directory as the operator should read it: absolute.
fn shown_dir(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

/// One request and its reply on a connected control socket.
fn exchange(mut stream: UnixStream, request: &ControlRequest) -> Result<String, ControlError> {
    stream.send_msg(request).map_err(ControlError::NoAnswer)?;
    let Some(payload) = stream.recv_frame().map_err(ControlError::NoAnswer)? else {
        return Err(ControlError::Closed);
    };
    match serde_json::from_slice::<ControlReply>(&payload) {
        Ok(ControlReply::Done { output }) => Ok(output),
        Ok(ControlReply::Failed { message }) => Err(ControlError::Failed(message)),
        Err(err) => Err(ControlError::BadReply(err)),
    }
}

/// `clients` of every server: one list (each line with its server's port),
/// as a table or JSON. A server that did not answer fails the command.
fn merge_clients(answers: Vec<Answer>, json: bool) -> Result<String, ControlError> {
    let mut all: Vec<ClientInfo> = Vec::new();
    for (port, answer) in answers {
        let listed = answer.map_err(|err| labelled(port, &err))?;
        let mut list: Vec<ClientInfo> =
            serde_json::from_str(&listed).map_err(ControlError::BadReply)?;
        for client in &mut list {
            client.port.get_or_insert(port);
        }
        all.extend(list);
    }
    if json {
        serde_json::to_string_pretty(&all).map_err(ControlError::Json)
    } else {
        Ok(format_table(&all))
    }
}

/// Any other request of every server (`kick`): done if any server did it;
/// each answer labelled with its server's port when there were several.
fn merge_texts(answers: Vec<Answer>) -> Result<String, ControlError> {
    let several = answers.len() > 1;
    let label = |port: u16, text: &str| match several {
        true => format!("port {port}: {text}"),
        false => text.to_owned(),
    };
    let (done, failed): (Vec<Answer>, Vec<Answer>) =
        answers.into_iter().partition(|(_, answer)| answer.is_ok());
    let done: Vec<String> = done
        .into_iter()
        .filter_map(|(port, answer)| Some(label(port, answer.ok()?.trim_end())))
        .collect();
    if !done.is_empty() {
        return Ok(done.join("\n"));
    }
    let failed: Vec<(u16, String)> = failed
        .into_iter()
        .filter_map(|(port, answer)| Some((port, answer.err()?.to_string())))
        .collect();
    // The same refusal from every server ("no connection 5bf3a46c") once.
    let message = match failed.windows(2).all(|pair| pair[0].1 == pair[1].1) {
        true => failed.into_iter().next().map(|(_, message)| message),
        false => Some(
            failed
                .iter()
                .map(|(port, message)| label(*port, message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    Err(ControlError::Failed(message.unwrap_or_default()))
}

/// `reload` of every server: done only if every server took it; each
/// answer labelled with its server's port when there were several.
fn merge_reloads(answers: Vec<Answer>) -> Result<String, ControlError> {
    let several = answers.len() > 1;
    let failed = answers.iter().any(|(_, answer)| answer.is_err());
    let texts: Vec<String> = answers
        .into_iter()
        .map(|(port, answer)| {
            let text = answer.unwrap_or_else(|err| err.to_string());
            match several {
                true => format!("port {port}: {}", text.trim_end()),
                false => text.trim_end().to_owned(),
            }
        })
        .collect();
    match failed {
        true => Err(ControlError::Failed(texts.join("\n"))),
        false => Ok(texts.join("\n")),
    }
}

/// An error of the server on `port`, saying which.
fn labelled(port: u16, err: &ControlError) -> ControlError {
    ControlError::Failed(format!("port {port}: {err}"))
}
