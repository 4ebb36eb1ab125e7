//! Renders a [`QueryResult`] as an aligned text table, the way psql prints one, for
//! `holdfast sql` and plain-text answers of the admin API.

use crate::QueryResult;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// The result as psql would print it: a centred header, a `---+---` rule, one line per row
/// (numbers right-aligned, NULL empty) and a `(N rows)` footer, noting a truncated result.
pub fn render_table(result: &QueryResult) -> String {
    let fields = result.schema.fields();
    let headers: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
    let numeric: Vec<bool> = fields.iter().map(|f| is_numeric(f.data_type())).collect();
    let options = FormatOptions::default().with_null("");
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(result.num_rows());
    for batch in &result.batches {
        let formatters: Vec<Option<ArrayFormatter<'_>>> = batch
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options).ok())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|formatter| match formatter {
                        Some(formatter) => one_line(&formatter.value(row).to_string()),
                        None => "?".to_owned(),
                    })
                    .collect(),
            );
        }
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }

    let mut out = String::new();
    let header: Vec<String> = headers
        .iter()
        .zip(&widths)
        .map(|(h, &w)| {
            let pad = w - width(h);
            format!(" {}{h}{} ", " ".repeat(pad / 2), " ".repeat(pad - pad / 2))
        })
        .collect();
    push_line(&mut out, &header.join("|"));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    push_line(&mut out, &rule.join("+"));
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(&numeric)
            .map(|((cell, &w), &right)| {
                let pad = " ".repeat(w - width(cell));
                if right {
                    format!(" {pad}{cell} ")
                } else {
                    format!(" {cell}{pad} ")
                }
            })
            .collect();
        push_line(&mut out, &cells.join("|"));
    }
    let count = rows.len();
    let noun = if count == 1 { "row" } else { "rows" };
    if result.truncated {
        out.push_str(&format!("({count} {noun}, truncated)\n"));
    } else {
        out.push_str(&format!("({count} {noun})\n"));
    }
    out
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line.trim_end());
    out.push('\n');
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Keeps one row on one line.
fn one_line(text: &str) -> String {
    if text.contains(['\n', '\r']) {
        text.replace('\r', "\\r").replace('\n', "\\n")
    } else {
        text.to_owned()
    }
}

fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, StringArray, UInt64Array};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    fn result(truncated: bool) -> QueryResult {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, true),
            Field::new("n", DataType::UInt64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("Counter"), None])),
            Arc::new(UInt64Array::from(vec![Some(7), Some(1234)])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        QueryResult {
            schema,
            batches: vec![batch],
            truncated,
        }
    }

    #[test]
    fn renders_like_psql() {
        let text = render_table(&result(false));
        let expected = [
            " service |  n",
            "---------+------",
            " Counter |    7",
            "         | 1234",
            "(2 rows)",
            "",
        ]
        .join("\n");
        assert_eq!(text, expected);
    }

    #[test]
    fn footer_counts_one_row_and_notes_truncation() {
        let mut one = result(true);
        one.batches[0] = one.batches[0].slice(0, 1);
        assert!(render_table(&one).ends_with("(1 row, truncated)\n"));
    }
}
