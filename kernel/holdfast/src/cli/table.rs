//! Aligned text tables that fit the terminal: the widest columns are cut with `…` until the
//! table is no wider than [`width`].

/// Columns are at least this wide after cutting.
const MIN_COLUMN: usize = 6;
/// Between two columns.
const GAP: &str = "  ";
/// The width when neither `COLUMNS` nor the terminal says.
const DEFAULT_WIDTH: usize = 120;

/// A table: headers and rows of cells.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns never cut (ids, which are copied into the next command).
    whole: Vec<usize>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            whole: Vec::new(),
        }
    }

    /// Keeps column `index` whole when the table is cut to fit.
    pub fn whole(mut self, index: usize) -> Self {
        self.whole.push(index);
        self
    }

    /// Appends a row (missing cells are empty, extra ones dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, at most `width` characters wide when its columns can be cut that far.
    pub fn render(&self, width: usize) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(row, i).chars().count());
            }
        }
        let floors: Vec<usize> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if self.whole.contains(&i) {
                    *w
                } else {
                    (*w).min(MIN_COLUMN)
                }
            })
            .collect();
        fit(&mut widths, &floors, width);
        let mut out = String::new();
        let mut line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let text: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| pad(c, widths[i], i == last))
                .collect();
            out.push_str(text.join(GAP).trim_end());
            out.push('\n');
        };
        line(self.headers.iter().map(String::as_str).collect());
        for row in &self.rows {
            line((0..widths.len()).map(|i| cell(row, i)).collect());
        }
        out
    }
}

/// `name  value` lines, the values aligned: a record's header.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let name_width = pairs
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(name, value)| format!("{name:<name_width$}  {}\n", sanitize(value)))
        .collect()
}

/// Narrows the widest column, one character at a time, until the row fits `width` or every
/// column is down to its floor.
fn fit(widths: &mut [usize], floors: &[usize], width: usize) {
    let mut total = widths.iter().sum::<usize>() + GAP.len() * widths.len().saturating_sub(1);
    while total > width {
        let Some(widest) = (0..widths.len())
            .filter(|i| widths[*i] > floors[*i])
            .max_by_key(|i| widths[*i])
        else {
            return;
        };
        widths[widest] -= 1;
        total -= 1;
    }
}

/// Cell `i` of `row` (empty if missing), on one line.
fn cell(row: &[String], i: usize) -> &str {
    row.get(i).map_or("", |c| sanitize(c))
}

/// Control characters (a newline in an error message) would break the layout.
fn sanitize(cell: &str) -> &str {
    cell.lines().next().unwrap_or("")
}

/// `cell` cut to `width` (with `…`) or padded to it (not the last column).
fn pad(cell: &str, width: usize, last: bool) -> String {
    let count = cell.chars().count();
    if count > width {
        let mut cut: String = cell.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        return cut;
    }
    if last {
        cell.to_owned()
    } else {
        format!("{cell}{}", " ".repeat(width - count))
    }
}

/// The output's width: `COLUMNS`, else the terminal's, else 120.
pub fn width() -> usize {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return columns;
    }
    terminal_width().unwrap_or(DEFAULT_WIDTH)
}

/// The width of the terminal on stdout, if it is one.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointed-to struct, which outlives the
    // call; on a descriptor that is not a terminal it fails and writes nothing.
    let status = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (status == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::Table;

    fn table() -> Table {
        let mut table = Table::new(&["ID", "TARGET", "STATUS"]).whole(2);
        table.row(vec![
            "inv_0123456789abcdef".into(),
            "Sleeper/nap".into(),
            "suspended".into(),
        ]);
        table.row(vec!["inv_1".into(), "Notes/n1/add\nsecond line".into()]);
        table
    }

    #[test]
    fn columns_are_aligned() {
        assert_eq!(
            table().render(200),
            "ID                    TARGET        STATUS\n\
             inv_0123456789abcdef  Sleeper/nap   suspended\n\
             inv_1                 Notes/n1/add\n"
        );
    }

    #[test]
    fn the_widest_columns_are_cut_to_fit() {
        let text = table().render(30);
        for line in text.lines() {
            assert!(line.chars().count() <= 30, "{text}");
        }
        assert!(text.contains("inv_0123…"), "{text}");
        assert!(text.contains("suspended"), "{text}");
        // Too narrow for anything: columns stop at their floor.
        let narrow = table().render(5);
        assert!(
            narrow.lines().nth(1).is_some_and(|l| l.contains('…')),
            "{narrow}"
        );
    }
}
