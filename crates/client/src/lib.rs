//! The echo-client library: connecting to an echo-server and speaking
//! protocol v1. The REPL and pipe mode arrive with the client issue.
