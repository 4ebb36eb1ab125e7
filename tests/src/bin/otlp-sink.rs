//! `otlp-sink --port P`: an OTLP/HTTP collector for benchmarks that only counts spans.
//!
//! Listens on `127.0.0.1:P` (0: a free port), prints `listening on 127.0.0.1:P` once ready,
//! accepts `POST /v1/traces` like a real collector and answers `GET /count` with the number of
//! spans received so far. Runs until killed.

use holdfast_e2e::otlp::{Mode, OtlpReceiver};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: otlp-sink --port <port>";

fn main() -> ExitCode {
    let port = match parse_port(std::env::args().skip(1)) {
        Ok(port) => port,
        Err(message) => {
            eprintln!("otlp-sink: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let receiver = match OtlpReceiver::bind(SocketAddr::from(([127, 0, 0, 1], port)), Mode::Count) {
        Ok(receiver) => receiver,
        Err(err) => {
            eprintln!("otlp-sink: cannot listen on 127.0.0.1:{port}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    // The benchmark waits for this line; it must not sit in a buffer.
    if writeln!(stdout, "listening on {}", receiver.address())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    loop {
        std::thread::park();
    }
}

/// Reads `--port P` or `--port=P`.
fn parse_port(mut args: impl Iterator<Item = String>) -> Result<u16, String> {
    let mut port = None;
    while let Some(arg) = args.next() {
        let value = if arg == "--port" {
            args.next().ok_or("--port needs a value")?
        } else if let Some(value) = arg.strip_prefix("--port=") {
            value.to_owned()
        } else if arg == "--help" || arg == "-h" {
            return Err("help requested".to_owned());
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        port = Some(
            value
                .parse::<u16>()
                .map_err(|_| format!("invalid port {value:?}"))?,
        );
    }
    port.ok_or_else(|| "--port is required".to_owned())
}
