//! `POST /query {"query": "…"}`: SQL over the node's partition stores and registry. Answers
//! `{"rows": [{column: value, …}, …]}` (every column present, nulls included), or with
//! `accept: text/plain` the aligned table `holdfast sql` prints; a cut-off result says so in the
//! `x-holdfast-truncated: true` header (more rows than `[sql] max_rows`, or more bytes than
//! `[sql] max_result_bytes`). A query over its share of the `[sql] memory_limit_bytes` pool is
//! answered 503 `{"code": "resources_exhausted", …}`; one over the statement timeout 408.

use crate::{ApiError, Kernel};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use holdfast_introspection::arrow::json::{ArrayWriter, WriterBuilder};
use holdfast_introspection::{QueryError, QueryResult, render_table};
use serde::Deserialize;

/// The body of `POST /query`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryRequest {
    query: String,
}

pub(crate) async fn query(
    kernel: web::Data<Kernel>,
    request: HttpRequest,
    body: web::Json<QueryRequest>,
) -> HttpResponse {
    let result = match kernel.query.query(&body.query).await {
        Ok(result) => result,
        Err(error) => return refused(&error),
    };
    let mut response = HttpResponse::Ok();
    if result.truncated {
        response.insert_header(("x-holdfast-truncated", "true"));
    }
    let text = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/plain"));
    if text {
        return response
            .content_type("text/plain; charset=utf-8")
            .body(render_table(&result));
    }
    match json_rows(&result) {
        Ok(rows) => response
            .content_type("application/json")
            .body(format!("{{\"rows\":{rows}}}")),
        Err(message) => {
            HttpResponse::InternalServerError().json(ApiError::new("internal", message))
        }
    }
}

/// The rows as one JSON array of objects, in column order.
fn json_rows(result: &QueryResult) -> Result<String, String> {
    let mut out = Vec::new();
    let mut writer: ArrayWriter<&mut Vec<u8>> = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build(&mut out);
    for batch in &result.batches {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())?;
    drop(writer);
    if out.is_empty() {
        return Ok("[]".to_owned());
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn refused(error: &QueryError) -> HttpResponse {
    match error {
        QueryError::Sql(message) => {
            HttpResponse::BadRequest().json(ApiError::new("invalid_query", message.clone()))
        }
        QueryError::Timeout(_) => HttpResponse::build(actix_web::http::StatusCode::REQUEST_TIMEOUT)
            .json(ApiError::new("statement_timeout", error.to_string())),
        QueryError::Unavailable(message) => {
            HttpResponse::ServiceUnavailable().json(ApiError::new("unavailable", message.clone()))
        }
        QueryError::ResourcesExhausted(_) => HttpResponse::ServiceUnavailable()
            .json(ApiError::new("resources_exhausted", error.to_string())),
        QueryError::Internal(_) => {
            HttpResponse::InternalServerError().json(ApiError::new("internal", error.to_string()))
        }
    }
}
