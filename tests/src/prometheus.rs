//! A strict reader of the Prometheus text exposition format (version 0.0.4), so end-to-end tests
//! fail on a `/metrics` page a real scraper would reject or misread, and can then ask for values.
//!
//! Stricter than the format in one way: every sample must belong to a family declared by `# TYPE`
//! (the format would read it as untyped), because every family the kernel renders is typed.
//! Rejected: malformed lines, bad metric or label names, bad label syntax or escapes, duplicate
//! labels, non-numeric values or timestamps, samples without a `# TYPE`, a family declared twice
//! or resumed after another began, a duplicate series, and histograms whose buckets are missing
//! `le`, decrease, or disagree with their `_count`.

use std::collections::{HashMap, HashSet};

/// Label pairs, in the order written.
pub type Labels = Vec<(String, String)>;

/// The family being read: declared by `# HELP` or `# TYPE`, typed once `# TYPE` is read.
struct Open {
    name: String,
    kind: Option<Kind>,
    help: Option<String>,
}

/// A family's metric type, from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `_bucket` (with `le`), `_sum` and `_count` samples.
    Histogram,
    /// `summary`: samples with `quantile`, `_sum` and `_count`.
    Summary,
    /// `untyped`.
    Untyped,
}

impl Kind {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            "untyped" => Kind::Untyped,
            _ => return None,
        })
    }

    /// Whether a sample named `sample` belongs to a family of this kind named `family`.
    fn owns(self, family: &str, sample: &str) -> bool {
        let suffixes: &[&str] = match self {
            Kind::Histogram => &["_bucket", "_sum", "_count"],
            Kind::Summary => &["", "_sum", "_count"],
            Kind::Counter | Kind::Gauge | Kind::Untyped => &[""],
        };
        suffixes
            .iter()
            .any(|suffix| sample.strip_suffix(suffix) == Some(family))
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's metric name (for histograms, with its `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Its labels, in the order written, values unescaped.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
    /// Its timestamp in milliseconds, if it has one.
    pub timestamp: Option<i64>,
}

impl Sample {
    /// Whether every `(label, value)` pair of `wanted` is among this sample's labels.
    fn has_labels(&self, wanted: &[(&str, &str)]) -> bool {
        wanted
            .iter()
            .all(|(label, value)| self.label(label) == Some(value))
    }

    /// The value of `label`, if the sample has it.
    pub fn label(&self, label: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, value)| value.as_str())
    }
}

/// One metric family: its declaration and its samples, in page order.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family name.
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// Its `# HELP` text, unescaped, if it has one.
    pub help: Option<String>,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// The families in page order.
    pub families: Vec<Family>,
}

impl Metrics {
    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Every sample named `name` (a family name, or a histogram's `_bucket`/`_sum`/`_count`).
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(move |s| s.name == name)
    }

    /// The value of the series `name` with exactly `labels` (in any order); failing that, of the
    /// only series of `name` that has all of `labels`. `None` if there is no such series, or if
    /// several have `labels` and none has exactly them.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Sample> = self
            .samples(name)
            .filter(|s| s.has_labels(labels))
            .collect();
        if let Some(exact) = matching.iter().find(|s| s.labels.len() == labels.len()) {
            return Some(exact.value);
        }
        match matching.as_slice() {
            [only] => Some(only.value),
            _ => None,
        }
    }

    /// The sum over every series of `name` that has all of `labels` (0 if none has).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name)
            .filter(|s| s.has_labels(labels))
            .map(|s| s.value)
            .sum()
    }
}

/// Parses a page in the text format, or says which line is wrong and why.
pub fn parse(text: &str) -> Result<Metrics, String> {
    let mut metrics = Metrics::default();
    // Families declared so far, by name: a second declaration or a resumed family is an error.
    let mut seen: HashSet<String> = HashSet::new();
    // The family being read: its name, its kind once `# TYPE` gave it, its help.
    let mut open: Option<Open> = None;
    let mut series: HashSet<(String, Labels)> = HashSet::new();
    for (number, line) in text.split('\n').enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        let line = line.trim_end_matches([' ', '\t']);
        if line.trim_start().is_empty() {
            continue;
        }
        if let Some(comment) = line.trim_start().strip_prefix('#') {
            let comment = comment.trim_start_matches([' ', '\t']);
            let (keyword, rest) = split_token(comment);
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let (name, rest) = split_token(rest);
            if !is_metric_name(name) {
                return Err(at(format!("bad metric name {name:?} in # {keyword}")));
            }
            let is_open = open.as_ref().is_some_and(|open| open.name == name);
            if !is_open {
                if seen.contains(name) {
                    return Err(at(format!(
                        "family {name} declared again or resumed after another family"
                    )));
                }
                close(&mut metrics, open.take());
                seen.insert(name.to_owned());
                open = Some(Open {
                    name: name.to_owned(),
                    kind: None,
                    help: None,
                });
            }
            let Some(Open { kind, help, .. }) = open.as_mut() else {
                return Err(at("no open family".into()));
            };
            if keyword == "HELP" {
                if help.is_some() {
                    return Err(at(format!("second # HELP for {name}")));
                }
                *help = Some(unescape(rest, false).map_err(at)?);
            } else {
                if kind.is_some() {
                    return Err(at(format!("second # TYPE for {name}")));
                }
                let (word, extra) = split_token(rest);
                if !extra.is_empty() {
                    return Err(at("text after the type".into()));
                }
                *kind =
                    Some(Kind::parse(word).ok_or_else(|| at(format!("unknown type {word:?}")))?);
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let Some(Open {
            name: family, kind, ..
        }) = open.as_ref()
        else {
            return Err(at("sample without a # TYPE".into()));
        };
        let Some(kind) = *kind else {
            return Err(at(format!("sample of {family}, declared without a # TYPE")));
        };
        if !kind.owns(family, &sample.name) {
            let earlier = seen
                .iter()
                .any(|f| f != family && sample.name.starts_with(f.as_str()));
            return Err(at(if earlier {
                format!("sample not contiguous with its family (inside {family})")
            } else {
                "sample without a # TYPE".into()
            }));
        }
        let mut key_labels = sample.labels.clone();
        key_labels.sort();
        if !series.insert((sample.name.clone(), key_labels)) {
            return Err(at("duplicate series".into()));
        }
        if kind == Kind::Histogram && sample.name.ends_with("_bucket") {
            match sample.label("le") {
                Some(le) if parse_value(le).is_some() => {}
                _ => return Err(at("histogram bucket without a numeric le label".into())),
            }
        }
        if kind == Kind::Summary && sample.name == *family && sample.label("quantile").is_none() {
            return Err(at("summary sample without a quantile label".into()));
        }
        let Some(family) = open_samples(&mut metrics, open.as_ref()) else {
            return Err(at("no open family".into()));
        };
        family.push(sample);
    }
    close(&mut metrics, open.take());
    for family in &metrics.families {
        if family.kind == Kind::Histogram {
            check_histogram(family)?;
        }
    }
    Ok(metrics)
}

/// The samples of the open family, which lives in `metrics` from its first sample on.
fn open_samples<'a>(metrics: &'a mut Metrics, open: Option<&Open>) -> Option<&'a mut Vec<Sample>> {
    let Open { name, kind, help } = open?;
    let kind = (*kind)?;
    let is_last = metrics.families.last().is_some_and(|f| f.name == *name);
    if !is_last {
        metrics.families.push(Family {
            name: name.clone(),
            kind,
            help: help.clone(),
            samples: Vec::new(),
        });
    }
    metrics.families.last_mut().map(|f| &mut f.samples)
}

/// Records the family that just ended (a family without samples is recorded here).
fn close(metrics: &mut Metrics, open: Option<Open>) {
    let Some(Open { name, kind, help }) = open else {
        return;
    };
    match metrics.families.last_mut() {
        Some(family) if family.name == name => {
            // A # HELP after the samples is allowed; keep it.
            if family.help.is_none() {
                family.help = help;
            }
        }
        _ => {
            if let Some(kind) = kind {
                metrics.families.push(Family {
                    name,
                    kind,
                    help,
                    samples: Vec::new(),
                });
            }
        }
    }
}

/// Each histogram series has a `+Inf` bucket, non-decreasing buckets, and a `_count` equal to
/// its `+Inf` bucket.
fn check_histogram(family: &Family) -> Result<(), String> {
    let name = &family.name;
    let mut buckets: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
    let mut counts: HashMap<Labels, f64> = HashMap::new();
    for sample in &family.samples {
        let mut labels: Labels = sample
            .labels
            .iter()
            .filter(|(label, _)| label != "le")
            .cloned()
            .collect();
        labels.sort();
        if sample.name.ends_with("_bucket") {
            let le = sample.label("le").and_then(parse_value).unwrap_or(f64::NAN);
            buckets.entry(labels).or_default().push((le, sample.value));
        } else if sample.name.ends_with("_count") {
            counts.insert(labels, sample.value);
        }
    }
    for (labels, mut series) in buckets {
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        if series.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!("histogram {name}{labels:?}: buckets decrease"));
        }
        let Some(&(le, total)) = series.last() else {
            continue;
        };
        if le != f64::INFINITY {
            return Err(format!("histogram {name}{labels:?}: no +Inf bucket"));
        }
        if let Some(count) = counts.get(&labels)
            && *count != total
        {
            return Err(format!(
                "histogram {name}{labels:?}: _count {count} is not the +Inf bucket {total}"
            ));
        }
    }
    Ok(())
}

/// Splits off the first blank-separated token.
fn split_token(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches([' ', '\t']);
    match text.find([' ', '\t']) {
        Some(end) => (&text[..end], text[end..].trim_start_matches([' ', '\t'])),
        None => (text, ""),
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Undoes the format's escapes: `\\` and `\n` everywhere, `\"` in label values only.
fn unescape(text: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            // HELP text keeps other backslashes as they are.
            Some(other) if !quotes => {
                out.push('\\');
                out.push(other);
            }
            other => return Err(format!("bad escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// A sample value: a decimal float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// `name[{labels}] value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let line = line.trim_start_matches([' ', '\t']);
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("no blank before the value".into());
    }
    let (value, rest) = split_token(rest);
    let value = parse_value(value).ok_or_else(|| format!("value {value:?} is not a number"))?;
    let (timestamp, rest) = split_token(rest);
    if !rest.is_empty() {
        return Err("text after the timestamp".into());
    }
    let timestamp = match timestamp {
        "" => None,
        t => Some(
            t.parse::<i64>()
                .map_err(|_| format!("timestamp {t:?} is not an integer"))?,
        ),
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp,
    })
}

/// Reads `label="value",…}` (the `{` already consumed); returns the labels and what follows.
fn parse_labels(mut text: &str) -> Result<(Labels, &str), String> {
    let mut labels: Labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', '\t']);
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        let name = &text[..name_end];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        text = text[name_end..].trim_start_matches([' ', '\t']);
        text = text.strip_prefix('=').ok_or("label without '='")?;
        text = text.trim_start_matches([' ', '\t']);
        text = text.strip_prefix('"').ok_or("label value not quoted")?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                '\n' => break,
                _ => {}
            }
        }
        let end = end.ok_or("unterminated label value")?;
        let value = unescape(&text[..end], true)?;
        if labels.iter().any(|(existing, _)| existing == name) {
            return Err(format!("label {name} given twice"));
        }
        labels.push((name.to_owned(), value));
        text = text[end + 1..].trim_start_matches([' ', '\t']);
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        } else if !text.starts_with('}') {
            return Err("labels not separated by ','".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP holdfast_node_id The id of this node.
# TYPE holdfast_node_id gauge
holdfast_node_id 1
# A plain comment is ignored.
# HELP holdfast_ingress_requests_total Ingress responses by HTTP status code.
# TYPE holdfast_ingress_requests_total counter
holdfast_ingress_requests_total{status_code="200"} 12
holdfast_ingress_requests_total{status_code="404"} 3

# TYPE holdfast_invocations_started_total counter
holdfast_invocations_started_total{service="Greeter",handler="greet"} 4
holdfast_invocations_started_total{ service = "Cart" , handler="add", } 2 1700000000000
holdfast_invocations_started_total{service="Odd\"S\\v\nc",handler="h"} 1
# HELP holdfast_invocation_duration_seconds Time to completion.
# TYPE holdfast_invocation_duration_seconds histogram
holdfast_invocation_duration_seconds_bucket{service="Greeter",handler="greet",le="0.5"} 1
holdfast_invocation_duration_seconds_bucket{service="Greeter",handler="greet",le="+Inf"} 4
holdfast_invocation_duration_seconds_sum{service="Greeter",handler="greet"} 7.25
holdfast_invocation_duration_seconds_count{service="Greeter",handler="greet"} 4
# HELP holdfast_trace_spans_dropped_total Spans lost.
# TYPE holdfast_trace_spans_dropped_total counter
holdfast_trace_spans_dropped_total 0
# HELP holdfast_empty_total A family without samples.
# TYPE holdfast_empty_total counter
# TYPE weird gauge
weird -Inf
"#;

    #[test]
    fn a_well_formed_page_is_read_completely() {
        let metrics = parse(PAGE).expect("valid page");
        assert_eq!(metrics.families.len(), 7);
        assert_eq!(metrics.value("holdfast_node_id", &[]), Some(1.0));
        assert_eq!(
            metrics.value("holdfast_ingress_requests_total", &[("status_code", "404")]),
            Some(3.0)
        );
        assert_eq!(
            metrics.value("holdfast_ingress_requests_total", &[("status_code", "500")]),
            None
        );
        assert_eq!(metrics.sum("holdfast_ingress_requests_total", &[]), 15.0);
        assert_eq!(
            metrics.sum("holdfast_ingress_requests_total", &[("status_code", "500")]),
            0.0
        );
        let cart = [("service", "Cart"), ("handler", "add")];
        assert_eq!(
            metrics.value("holdfast_invocations_started_total", &cart),
            Some(2.0)
        );
        let odd = metrics
            .samples("holdfast_invocations_started_total")
            .find(|s| s.label("handler") == Some("h"))
            .expect("escaped series");
        assert_eq!(odd.label("service"), Some("Odd\"S\\v\nc"));
        let timestamped = metrics
            .samples("holdfast_invocations_started_total")
            .find(|s| s.label("service") == Some("Cart"))
            .expect("cart");
        assert_eq!(timestamped.timestamp, Some(1_700_000_000_000));
        // Several series match only some labels: `value` refuses to pick one, `sum` adds them.
        assert_eq!(
            metrics.value("holdfast_invocations_started_total", &[]),
            None
        );
        assert_eq!(metrics.sum("holdfast_invocations_started_total", &[]), 7.0);
        // A unique partial match is found.
        assert_eq!(
            metrics.value(
                "holdfast_invocation_duration_seconds_bucket",
                &[("le", "+Inf")]
            ),
            Some(4.0)
        );
        let histogram = metrics
            .family("holdfast_invocation_duration_seconds")
            .expect("histogram family");
        assert_eq!(histogram.kind, Kind::Histogram);
        assert_eq!(histogram.samples.len(), 4);
        assert_eq!(histogram.help.as_deref(), Some("Time to completion."));
        assert_eq!(
            metrics
                .family("holdfast_empty_total")
                .map(|f| f.samples.len()),
            Some(0)
        );
        assert_eq!(metrics.value("weird", &[]), Some(f64::NEG_INFINITY));
    }

    fn rejected(page: &str, because: &str) {
        match parse(page) {
            Ok(metrics) => panic!("accepted ({because}): {metrics:?}"),
            Err(error) => assert!(error.contains(because), "{error:?} lacks {because:?}"),
        }
    }

    #[test]
    fn malformed_pages_are_rejected_with_the_reason() {
        let typed = "# TYPE m counter\n";
        for (body, because) in [
            ("m 1\n", "without a # TYPE"),
            ("# HELP m only help\nm 1\n", "declared without a # TYPE"),
            ("# TYPE m counter\nother 1\n", "without a # TYPE"),
            ("# TYPE m counter\n# TYPE m counter\nm 1\n", "second # TYPE"),
            ("# HELP m a\n# HELP m b\n# TYPE m gauge\n", "second # HELP"),
            (
                "# TYPE m counter\nm 1\n# TYPE n counter\nn 1\nm 2\n",
                "not contiguous",
            ),
            (
                "# TYPE m counter\nm 1\n# TYPE n counter\n# TYPE m counter\n",
                "declared again",
            ),
            ("# TYPE m shiny\n", "unknown type"),
            ("# TYPE 9m counter\n", "bad metric name"),
            ("# TYPE m counter\nm 1\nm 2\n", "duplicate series"),
        ] {
            rejected(body, because);
        }
        for (line, because) in [
            ("m one", "not a number"),
            ("m", "no blank before the value"),
            ("m 0x10", "not a number"),
            ("m 1 soon", "not an integer"),
            ("m 1 2 3", "text after the timestamp"),
            ("m{a=\"1\" 1", "not separated"),
            ("m{a=1} 1", "not quoted"),
            ("m{a=\"1} 1", "unterminated"),
            ("m{a} 1", "without '='"),
            ("m{1a=\"x\"} 1", "bad label name"),
            ("m{a=\"x\",a=\"y\"} 1", "given twice"),
            ("m{a=\"\\t\"} 1", "bad escape"),
            ("m{a=\"x\"}1", "no blank before the value"),
            ("m-x 1", "bad metric name"),
        ] {
            rejected(&format!("{typed}{line}\n"), because);
        }
    }

    #[test]
    fn inconsistent_histograms_are_rejected() {
        let head = "# TYPE h histogram\n";
        for (body, because) in [
            ("h_bucket 1\n", "numeric le"),
            ("h_bucket{le=\"x\"} 1\n", "numeric le"),
            (
                "h_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n",
                "buckets decrease",
            ),
            ("h_bucket{le=\"1\"} 3\n", "no +Inf bucket"),
            (
                "h_bucket{le=\"+Inf\"} 3\nh_count 4\n",
                "is not the +Inf bucket",
            ),
            ("h 3\n", "without a # TYPE"),
        ] {
            rejected(&format!("{head}{body}"), because);
        }
        let fine = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
        assert_eq!(parse(fine).map(|m| m.sum("h_count", &[])), Ok(2.0));
    }

    #[test]
    fn summaries_need_quantiles() {
        let page = "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 2\n";
        assert_eq!(parse(page).map(|m| m.value("s_count", &[])), Ok(Some(2.0)));
        rejected("# TYPE s summary\ns 1\n", "quantile");
    }
}
