//! Applications on the API: echo in all its forms, the HTTP/1.1 server, and blast (the
//! test bed's line rate).

pub mod blast;
pub mod echo;
pub mod http;
