//! The extended query protocol at message level: text-format parameters and
//! results, client-declared parameter types, and error recovery (skip to
//! Sync, then ReadyForQuery).

mod common;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal frontend speaking protocol 3.0 over a socket.
struct Frontend {
    socket: TcpStream,
}

/// A backend message: type byte and body.
#[derive(Debug)]
struct Message {
    kind: u8,
    body: Vec<u8>,
}

impl Message {
    /// Fields of a DataRow as text (`None` for NULL).
    fn data_row(&self) -> Vec<Option<String>> {
        assert_eq!(self.kind, b'D');
        let count = u16::from_be_bytes([self.body[0], self.body[1]]);
        let mut at = 2;
        let mut fields = Vec::new();
        for _ in 0..count {
            let len = i32::from_be_bytes(self.body[at..at + 4].try_into().expect("len"));
            at += 4;
            if len < 0 {
                fields.push(None);
            } else {
                let len = usize::try_from(len).expect("len");
                fields.push(Some(
                    String::from_utf8_lossy(&self.body[at..at + len]).into_owned(),
                ));
                at += len;
            }
        }
        fields
    }

    /// The SQLSTATE of an ErrorResponse.
    fn sqlstate(&self) -> String {
        assert_eq!(self.kind, b'E');
        let mut fields = self.body.split(|b| *b == 0);
        fields
            .find(|f| f.first() == Some(&b'C'))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
            .unwrap_or_default()
    }

    /// Parameter type oids of a ParameterDescription.
    fn parameter_types(&self) -> Vec<u32> {
        assert_eq!(self.kind, b't');
        self.body[2..]
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("oid")))
            .collect()
    }
}

fn cstr(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

impl Frontend {
    async fn connect(addr: SocketAddr) -> Self {
        let socket = TcpStream::connect(addr).await.expect("connect");
        let mut frontend = Frontend { socket };
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        cstr(&mut body, "user");
        cstr(&mut body, "raw");
        cstr(&mut body, "database");
        cstr(&mut body, "holdfast");
        body.push(0);
        let len = i32::try_from(body.len() + 4).expect("len");
        let mut startup = len.to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        frontend.socket.write_all(&startup).await.expect("startup");
        let messages = frontend.until_ready().await;
        assert_eq!(messages.first().map(|m| m.kind), Some(b'R'));
        frontend
    }

    async fn send(&mut self, kind: u8, body: &[u8]) {
        let mut message = vec![kind];
        message.extend_from_slice(&i32::try_from(body.len() + 4).expect("len").to_be_bytes());
        message.extend_from_slice(body);
        self.socket.write_all(&message).await.expect("send");
    }

    async fn parse(&mut self, name: &str, sql: &str, types: &[u32]) {
        let mut body = Vec::new();
        cstr(&mut body, name);
        cstr(&mut body, sql);
        body.extend_from_slice(&u16::try_from(types.len()).expect("n").to_be_bytes());
        for t in types {
            body.extend_from_slice(&t.to_be_bytes());
        }
        self.send(b'P', &body).await;
    }

    /// Bind with one format code per parameter and per result column.
    async fn bind(
        &mut self,
        statement: &str,
        params: &[(i16, Option<&[u8]>)],
        result_formats: &[i16],
    ) {
        let mut body = Vec::new();
        cstr(&mut body, "");
        cstr(&mut body, statement);
        body.extend_from_slice(&u16::try_from(params.len()).expect("n").to_be_bytes());
        for (format, _) in params {
            body.extend_from_slice(&format.to_be_bytes());
        }
        body.extend_from_slice(&u16::try_from(params.len()).expect("n").to_be_bytes());
        for (_, value) in params {
            match value {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    body.extend_from_slice(&i32::try_from(v.len()).expect("len").to_be_bytes());
                    body.extend_from_slice(v);
                }
            }
        }
        body.extend_from_slice(
            &u16::try_from(result_formats.len())
                .expect("n")
                .to_be_bytes(),
        );
        for f in result_formats {
            body.extend_from_slice(&f.to_be_bytes());
        }
        self.send(b'B', &body).await;
    }

    async fn describe_statement(&mut self, name: &str) {
        let mut body = vec![b'S'];
        cstr(&mut body, name);
        self.send(b'D', &body).await;
    }

    async fn execute(&mut self) {
        let mut body = Vec::new();
        cstr(&mut body, "");
        body.extend_from_slice(&0i32.to_be_bytes());
        self.send(b'E', &body).await;
    }

    async fn sync(&mut self) -> Vec<Message> {
        self.send(b'S', &[]).await;
        self.until_ready().await
    }

    async fn read(&mut self) -> Message {
        let kind = self.socket.read_u8().await.expect("message type");
        let len = self.socket.read_i32().await.expect("message length");
        let mut body = vec![0u8; usize::try_from(len - 4).expect("len")];
        self.socket.read_exact(&mut body).await.expect("body");
        Message { kind, body }
    }

    async fn until_ready(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        loop {
            let message = self.read().await;
            let done = message.kind == b'Z';
            messages.push(message);
            if done {
                return messages;
            }
        }
    }
}

fn kinds(messages: &[Message]) -> String {
    messages.iter().map(|m| m.kind as char).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_parameters_and_text_results() {
    let server = common::start(common::default_limits()).await;
    let mut fe = Frontend::connect(server.local_addr()).await;
    fe.parse(
        "by_retry",
        "SELECT id, retry_count, score FROM sys_invocation WHERE retry_count = $1 AND status = $2",
        &[],
    )
    .await;
    fe.describe_statement("by_retry").await;
    let messages = fe.sync().await;
    // ParseComplete, ParameterDescription, RowDescription, ReadyForQuery
    assert_eq!(kinds(&messages), "1tTZ");
    assert_eq!(messages[1].parameter_types(), vec![23, 25]);

    fe.bind("by_retry", &[(0, Some(b"3")), (0, Some(b"running"))], &[0])
        .await;
    fe.execute().await;
    let messages = fe.sync().await;
    assert_eq!(kinds(&messages), "2DCZ");
    assert_eq!(
        messages[1].data_row(),
        vec![
            Some("inv_2".to_owned()),
            Some("3".to_owned()),
            Some("-0.25".to_owned())
        ]
    );

    // A NULL parameter matches nothing.
    fe.bind("by_retry", &[(0, None), (0, Some(b"running"))], &[])
        .await;
    fe.execute().await;
    assert_eq!(kinds(&fe.sync().await), "2CZ");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_declared_parameter_types_in_binary() {
    let server = common::start(common::default_limits()).await;
    let mut fe = Frontend::connect(server.local_addr()).await;
    // The client declares int8 although the column is int4.
    fe.parse(
        "",
        "SELECT id FROM sys_invocation WHERE retry_count = $1",
        &[20],
    )
    .await;
    fe.describe_statement("").await;
    let messages = fe.sync().await;
    assert_eq!(messages[1].parameter_types(), vec![20]);
    fe.parse(
        "",
        "SELECT id FROM sys_invocation WHERE retry_count = $1",
        &[20],
    )
    .await;
    fe.bind("", &[(1, Some(&1i64.to_be_bytes()))], &[0]).await;
    fe.execute().await;
    let messages = fe.sync().await;
    assert_eq!(kinds(&messages), "12DCZ");
    assert_eq!(messages[2].data_row(), vec![Some("inv_3".to_owned())]);

    // Mixed formats: binary int4, text text; binary result for column 1.
    fe.parse(
        "",
        "SELECT retry_count, id FROM sys_invocation WHERE retry_count = $1 OR id = $2 ORDER BY id",
        &[],
    )
    .await;
    fe.bind(
        "",
        &[(1, Some(&0i32.to_be_bytes())), (0, Some(b"inv_3"))],
        &[1, 0],
    )
    .await;
    fe.execute().await;
    let messages = fe.sync().await;
    assert_eq!(kinds(&messages), "12DDCZ");
    let row = &messages[2];
    // Binary int4 0 then text "inv_1".
    assert_eq!(&row.body[2..10], &[0, 0, 0, 4, 0, 0, 0, 0]);
    assert_eq!(messages[3].data_row()[1], Some("inv_3".to_owned()));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_skip_to_sync_and_the_session_recovers() {
    let server = common::start(common::default_limits()).await;
    let mut fe = Frontend::connect(server.local_addr()).await;

    // Parse fails: Bind and Execute are skipped until Sync.
    fe.parse("", "SELECT * FROM missing_table", &[]).await;
    fe.bind("", &[], &[]).await;
    fe.execute().await;
    let messages = fe.sync().await;
    assert_eq!(kinds(&messages), "EZ");
    assert_eq!(messages[0].sqlstate(), "42P01");

    // Execute fails (bad parameter value for an int4).
    fe.parse(
        "",
        "SELECT id FROM sys_invocation WHERE retry_count = $1",
        &[],
    )
    .await;
    fe.bind("", &[(0, Some(b"three"))], &[]).await;
    fe.execute().await;
    let messages = fe.sync().await;
    assert_eq!(kinds(&messages), "12EZ");
    assert_eq!(messages[2].sqlstate(), "22P02");

    // Wrong number of parameters.
    fe.parse(
        "",
        "SELECT id FROM sys_invocation WHERE retry_count = $1",
        &[],
    )
    .await;
    fe.bind("", &[], &[]).await;
    fe.execute().await;
    let messages = fe.sync().await;
    assert_eq!(messages.last().map(|m| m.kind), Some(b'Z'));
    assert!(messages.iter().any(|m| m.kind == b'E'));

    // Two statements cannot be prepared together.
    fe.parse("", "SELECT 1; SELECT 2", &[]).await;
    let messages = fe.sync().await;
    assert_eq!(kinds(&messages), "EZ");
    assert_eq!(messages[0].sqlstate(), "42601");

    // And then everything works again.
    fe.parse("", "SELECT count(*) FROM state", &[]).await;
    fe.bind("", &[], &[]).await;
    fe.execute().await;
    let messages = fe.sync().await;
    assert_eq!(kinds(&messages), "12DCZ");
    assert_eq!(messages[2].data_row(), vec![Some("3".to_owned())]);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_commands_through_the_extended_protocol() {
    let server = common::start(common::default_limits()).await;
    let mut fe = Frontend::connect(server.local_addr()).await;
    for sql in ["SET extra_float_digits = 3", "BEGIN", "SELECT 1", "COMMIT"] {
        fe.parse("", sql, &[]).await;
        fe.bind("", &[], &[]).await;
        fe.execute().await;
    }
    let messages = fe.sync().await;
    assert_eq!(kinds(&messages), "12C12C12DC12CZ");
    // Idle again after COMMIT.
    assert_eq!(messages.last().map(|m| m.body.clone()), Some(vec![b'I']));
    server.shutdown().await.expect("shutdown");
}
