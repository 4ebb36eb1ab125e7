//! The pgwire handlers of one connection: startup (SCRAM-SHA-256 when a password is set),
//! simple query protocol, extended query protocol and cancel requests.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::channel::oneshot;
use futures::{Sink, SinkExt};
use pgwire::api::auth::mechanism::{AuthMechanism, AuthState};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_ready_for_query};
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionGuard, ConnectionHandle, ConnectionManager,
    METADATA_DATABASE, METADATA_USER, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::RowDescription;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;

use crate::auth::Scram;

use crate::error::{SqlError, sqlstate};
use crate::params::{arrow_type_of_pg, decode_param};
use crate::session::{Outcome, Prepared, Session, Truncated, TxnEffect};
use crate::sql::split_statements;

/// Server-wide state shared by all connections.
pub(crate) struct Shared {
    pub manager: Arc<ConnectionManager>,
    pub pids: RandomPidSecretKeyGenerator,
    /// The password check, when `[sql] password` is set; `None` accepts everyone.
    pub scram: Option<Scram>,
}

/// The handlers of one connection, all sharing that connection's session.
pub(crate) struct ConnectionHandlers {
    query: Arc<QueryHandler>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl ConnectionHandlers {
    pub fn new(session: Arc<Session>, shared: Arc<Shared>) -> Self {
        Self {
            query: Arc::new(QueryHandler {
                session: Arc::clone(&session),
                parser: Arc::new(Parser {
                    session: Arc::clone(&session),
                }),
            }),
            startup: Arc::new(Startup {
                session,
                shared: Arc::clone(&shared),
                mechanism: Mutex::new(None),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(Arc::clone(&shared.manager))),
        }
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.query)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.query)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Accepts every user (trust authentication), or, with a password set, every
/// user presenting it over SCRAM-SHA-256; announces server parameters that
/// make drivers treat the endpoint as PostgreSQL 15.
pub(crate) struct Startup {
    session: Arc<Session>,
    shared: Arc<Shared>,
    /// The SCRAM exchange under way on this connection.
    mechanism: Mutex<Option<Box<dyn AuthMechanism>>>,
}

fn server_parameters() -> DefaultServerParameterProvider {
    let mut params = DefaultServerParameterProvider::default();
    params.server_version = crate::udf::SERVER_VERSION.to_owned();
    params.time_zone = "UTC".to_owned();
    params.date_style = "ISO, MDY".to_owned();
    params.interval_style = "postgres".to_owned();
    params.is_superuser = false;
    params.default_transaction_read_only = true;
    params
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                match &self.shared.scram {
                    None => self.start_session(client).await?,
                    Some(scram) => {
                        let mut mechanism = scram.mechanism();
                        let state = mechanism.begin(client).await?;
                        *self.mechanism.lock().await = Some(mechanism);
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        self.advance(client, state).await?;
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(answer) => {
                self.authenticate(client, answer).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Startup {
    /// Feeds the client's answer to the SCRAM exchange of this connection.
    async fn authenticate<C>(
        &self,
        client: &mut C,
        answer: PasswordMessageFamily,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = {
            let mut slot = self.mechanism.lock().await;
            let Some(mechanism) = slot.as_mut() else {
                return Err(PgWireError::NoAuthenticationInProgress);
            };
            mechanism.next(client, answer).await
        };
        let state = state.map_err(|e| self.failed(client, e))?;
        self.advance(client, state).await
    }

    /// Sends the next step of the exchange, or starts the session once it succeeded.
    async fn advance<C>(&self, client: &mut C, state: AuthState) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match state {
            AuthState::InProgress(request) => {
                client
                    .send(PgWireBackendMessage::Authentication(request))
                    .await?;
                Ok(())
            }
            AuthState::Ok { final_message, .. } => {
                *self.mechanism.lock().await = None;
                if let Some(last) = final_message {
                    client
                        .feed(PgWireBackendMessage::Authentication(last))
                        .await?;
                }
                self.start_session(client).await
            }
            AuthState::Failed(e) => Err(self.failed(client, e)),
        }
    }

    /// Logs a failed authentication (never the password) and hands the error on.
    fn failed<C: ClientInfo>(&self, client: &C, error: PgWireError) -> PgWireError {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let peer = client.socket_addr();
        tracing::warn!(%peer, %user, error = %error, "psql authentication failed");
        error
    }

    /// Registers the connection for cancel requests, names the session and
    /// completes the startup (AuthenticationOk, parameters, ReadyForQuery).
    async fn start_session<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret_key) = self.shared.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.shared.manager.register(pid, secret_key);
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert::<ConnectionGuard>(guard);
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_else(|| "holdfast".to_owned());
        let database = client
            .metadata()
            .get(METADATA_DATABASE)
            .cloned()
            .unwrap_or_else(|| user.clone());
        self.session.set_identity(&user, &database, pid);
        tracing::debug!(%user, %database, pid, "pgwire session started");
        finish_authentication(client, &server_parameters()).await
    }
}

/// Parses statements for the extended protocol (the statement store keeps
/// the resulting [`Prepared`]).
pub(crate) struct Parser {
    session: Arc<Session>,
}

fn format_at(format: &Format, idx: usize) -> Result<FieldFormat, SqlError> {
    match format {
        Format::UnifiedText => Ok(FieldFormat::Text),
        Format::UnifiedBinary => Ok(FieldFormat::Binary),
        Format::Individual(codes) => {
            codes
                .get(idx)
                .map(|c| FieldFormat::from(*c))
                .ok_or_else(|| {
                    SqlError::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("no format code given for column or parameter {}", idx + 1),
                    )
                })
        }
    }
}

fn result_fields(prepared: &Prepared, format: Option<&Format>) -> Result<Vec<FieldInfo>, SqlError> {
    let Some(format) = format else {
        return Ok(prepared.fields(|_| FieldFormat::Text));
    };
    let count = prepared.schema().map(|s| s.fields().len()).unwrap_or(0);
    for idx in 0..count {
        format_at(format, idx)?;
    }
    Ok(prepared.fields(|idx| format_at(format, idx).unwrap_or(FieldFormat::Text)))
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = split_statements(sql);
        if statements.len() > 1 {
            return Err(SqlError::syntax(
                "cannot insert multiple commands into a prepared statement",
            )
            .into_pgwire());
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let session = &self.session;
        session
            .with_timeout(session.prepare(&statement))
            .await
            .map(Some)
            .map_err(SqlError::into_pgwire)
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        result_fields(stmt, column_format).map_err(SqlError::into_pgwire)
    }
}

/// Both query protocols over one session.
pub(crate) struct QueryHandler {
    session: Arc<Session>,
    parser: Arc<Parser>,
}

async fn cancel_receiver<C: ClientInfo>(client: &C) -> Option<oneshot::Receiver<()>> {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>()?;
    Some(handle.start_query().await)
}

/// Runs `fut`, failing with 57014 if the client sends a cancel request.
async fn cancellable<T>(
    fut: impl Future<Output = Result<T, SqlError>>,
    cancel: Option<oneshot::Receiver<()>>,
) -> Result<T, SqlError> {
    let Some(cancel) = cancel else {
        return fut.await;
    };
    let canceled = async move {
        if cancel.await.is_err() {
            // Sender dropped without a cancel request: never fire.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = fut => result,
        () = canceled => Err(SqlError::new(
            sqlstate::QUERY_CANCELED,
            "canceling statement due to user request",
        )),
    }
}

fn truncation_notice(cap: Truncated) -> PgWireBackendMessage {
    let message = match cap {
        Truncated::Rows(limit) => {
            format!("result truncated to {limit} rows (the endpoint's row limit)")
        }
        Truncated::Bytes(limit) => {
            format!("result truncated to {limit} bytes (the endpoint's result size limit)")
        }
    };
    let mut info = ErrorInfo::new("NOTICE".to_owned(), "01000".to_owned(), message);
    info.hint = Some("add a LIMIT or a narrower WHERE clause".to_owned());
    PgWireBackendMessage::NoticeResponse(info.into())
}

fn command_tag(tag: &str, rows: usize) -> Tag {
    if tag == "SELECT" {
        Tag::new(tag).with_rows(rows)
    } else {
        Tag::new(tag)
    }
}

impl QueryHandler {
    /// Prepares and executes one statement of a simple query, under the
    /// statement timeout.
    async fn run_simple(&self, sql: &str) -> Result<(Vec<FieldInfo>, Outcome), SqlError> {
        let session = &self.session;
        session
            .with_timeout(async {
                let prepared = session.prepare(sql).await?;
                if !prepared.param_types().is_empty() {
                    return Err(SqlError::new(
                        sqlstate::UNDEFINED_PARAMETER,
                        "there is no parameter $1",
                    ));
                }
                let fields = prepared.fields(|_| FieldFormat::Text);
                let outcome = session.execute(&prepared, Vec::new(), &fields).await?;
                Ok((fields, outcome))
            })
            .await
    }

    /// Decodes the portal's parameters to the statement's types.
    fn bind_params(
        &self,
        portal: &Portal<Prepared>,
    ) -> Result<Vec<datafusion::common::ScalarValue>, SqlError> {
        let prepared = &portal.statement.statement;
        let inferred: Vec<Option<datafusion::arrow::datatypes::DataType>> = match prepared {
            Prepared::Query { params, .. } => params.clone(),
            _ => Vec::new(),
        };
        if portal.parameters.len() != inferred.len() {
            return Err(SqlError::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {}",
                    portal.parameters.len(),
                    inferred.len()
                ),
            ));
        }
        let announced = prepared.param_types();
        portal
            .parameters
            .iter()
            .enumerate()
            .map(|(idx, value)| {
                let client_type = portal.statement.parameter_types.get(idx).cloned().flatten();
                let ty = client_type
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| announced.get(idx).cloned())
                    .unwrap_or(Type::TEXT);
                let target = inferred
                    .get(idx)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| arrow_type_of_pg(&ty));
                decode_param(
                    idx,
                    value.as_deref(),
                    format_at(&portal.parameter_format, idx)?,
                    &ty,
                    Some(&target),
                )
            })
            .collect()
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut status = client.transaction_status();
        let statements = split_statements(&query.query);
        // A syntax error anywhere fails the whole string before anything runs.
        let syntax = if statements.len() > 1 {
            statements
                .iter()
                .try_for_each(|s| self.session.check_syntax(s))
        } else {
            Ok(())
        };
        if statements.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else if let Err(e) = syntax {
            client
                .feed(PgWireBackendMessage::ErrorResponse(
                    e.into_error_info().into(),
                ))
                .await?;
            status = status.to_error_state();
        } else {
            for statement in &statements {
                let cancel = cancel_receiver(client).await;
                match cancellable(self.run_simple(statement), cancel).await {
                    Ok((
                        fields,
                        Outcome::Rows {
                            rows,
                            tag,
                            truncated,
                        },
                    )) => {
                        let description =
                            RowDescription::new(fields.iter().map(Into::into).collect());
                        client
                            .feed(PgWireBackendMessage::RowDescription(description))
                            .await?;
                        let count = rows.len();
                        for row in rows {
                            client.feed(PgWireBackendMessage::DataRow(row)).await?;
                        }
                        if let Some(limit) = truncated {
                            client.feed(truncation_notice(limit)).await?;
                        }
                        client
                            .feed(PgWireBackendMessage::CommandComplete(
                                command_tag(&tag, count).into(),
                            ))
                            .await?;
                    }
                    Ok((_, Outcome::Command { tag, txn })) => {
                        status = match txn {
                            TxnEffect::Begin => status.to_in_transaction_state(),
                            TxnEffect::End => status.to_idle_state(),
                            TxnEffect::None => status,
                        };
                        client
                            .feed(PgWireBackendMessage::CommandComplete(Tag::new(&tag).into()))
                            .await?;
                    }
                    Err(e) => {
                        tracing::debug!(code = e.code, message = %e.message, "query failed");
                        client
                            .feed(PgWireBackendMessage::ErrorResponse(
                                e.into_error_info().into(),
                            ))
                            .await?;
                        status = status.to_error_state();
                        break;
                    }
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::new();
        for statement in split_statements(query) {
            match self.run_simple(&statement).await {
                Ok((fields, Outcome::Rows { rows, tag, .. })) => {
                    let mut response = QueryResponse::new(
                        Arc::new(fields),
                        futures::stream::iter(rows.into_iter().map(Ok)),
                    );
                    response.set_command_tag(&tag);
                    responses.push(Response::Query(response));
                }
                Ok((_, Outcome::Command { tag, txn })) => responses.push(match txn {
                    TxnEffect::Begin => Response::TransactionStart(Tag::new(&tag)),
                    TxnEffect::End => Response::TransactionEnd(Tag::new(&tag)),
                    TxnEffect::None => Response::Execution(Tag::new(&tag)),
                }),
                Err(e) => {
                    responses.push(Response::Error(Box::new(e.into_error_info())));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let run = async {
            let params = self.bind_params(portal)?;
            let fields = result_fields(prepared, Some(&portal.result_column_format))?;
            let outcome = self
                .session
                .with_timeout(self.session.execute(prepared, params, &fields))
                .await?;
            Ok::<_, SqlError>((fields, outcome))
        };
        match run.await.map_err(SqlError::into_pgwire)? {
            (
                fields,
                Outcome::Rows {
                    rows,
                    tag,
                    truncated,
                },
            ) => {
                if let Some(limit) = truncated {
                    client.feed(truncation_notice(limit)).await?;
                }
                let mut response = QueryResponse::new(
                    Arc::new(fields),
                    futures::stream::iter(rows.into_iter().map(Ok)),
                );
                response.set_command_tag(&tag);
                Ok(Response::Query(response))
            }
            (_, Outcome::Command { tag, txn }) => Ok(match txn {
                TxnEffect::Begin => Response::TransactionStart(Tag::new(&tag)),
                TxnEffect::End => Response::TransactionEnd(Tag::new(&tag)),
                TxnEffect::None => Response::Execution(Tag::new(&tag)),
            }),
        }
    }
}
