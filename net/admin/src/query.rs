//! `POST /query {"query": "…"}`: SQL over the node's partition stores and registry. Answers an
//! Apache Arrow IPC stream (`application/vnd.apache.arrow.stream`) unless the `accept` header
//! asks for `application/json` — `{"rows": [{column: value, …}, …]}`, every column present,
//! nulls included — or `text/plain`, the aligned table `holdfast sql` prints; a cut-off result
//! says so in the `x-holdfast-truncated: true` header (more rows than `[sql] max_rows`, or more
//! bytes than `[sql] max_result_bytes`). A query over its share of the `[sql] memory_limit_bytes`
//! pool is answered 503 `{"code": "resources_exhausted", …}`; one over the statement timeout 408.

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
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default();
    if accept.contains("text/plain") {
        return response
            .content_type("text/plain; charset=utf-8")
            .body(render_table(&result));
    }
    let encoded = if accept.contains("application/json") {
        json_rows(&result).map(|rows| {
            (
                "application/json",
                format!("{{\"rows\":{rows}}}").into_bytes(),
            )
        })
    } else {
        arrow_stream(&result).map(|bytes| (ARROW_STREAM, bytes))
    };
    match encoded {
        Ok((content_type, body)) => response.content_type(content_type).body(body),
        Err(message) => {
            HttpResponse::InternalServerError().json(ApiError::new("internal", message))
        }
    }
}

/// The media type of an Arrow IPC stream.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The result as an Arrow IPC stream: its schema, then every batch.
fn arrow_stream(result: &QueryResult) -> Result<Vec<u8>, String> {
    use holdfast_introspection::arrow::ipc::writer::StreamWriter;
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &result.schema).map_err(|e| e.to_string())?;
    for batch in &result.batches {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())?;
    drop(writer);
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_introspection::arrow::array::{Array, Int64Array, StringArray};
    use holdfast_introspection::arrow::datatypes::{DataType, Field, Schema};
    use holdfast_introspection::arrow::ipc::reader::StreamReader;
    use holdfast_introspection::arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    #[test]
    fn results_read_back_from_the_arrow_stream() -> Result<(), Box<dyn std::error::Error>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
            ],
        )?;
        let result = QueryResult {
            schema: schema.clone(),
            batches: vec![batch.clone()],
            truncated: false,
        };
        let bytes = arrow_stream(&result)?;
        let mut reader = StreamReader::try_new(bytes.as_slice(), None)?;
        assert_eq!(reader.schema(), schema);
        let read = reader.next().ok_or("no batch")??;
        assert_eq!(read, batch);
        assert!(read.column(1).is_null(1));
        assert!(reader.next().is_none());

        // No rows: the schema alone.
        let empty = QueryResult {
            schema: schema.clone(),
            batches: Vec::new(),
            truncated: false,
        };
        let bytes = arrow_stream(&empty)?;
        let reader = StreamReader::try_new(bytes.as_slice(), None)?;
        assert_eq!(reader.schema(), schema);
        assert_eq!(reader.count(), 0);
        Ok(())
    }
}
