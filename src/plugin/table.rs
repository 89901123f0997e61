//! Aligned text tables with optional ANSI colour, for the plugin's terminal output.
//!
//! Widths are measured on the plain text and the padding added before the colour codes, so a
//! coloured table lines up exactly like a plain one.

/// What a cell means, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    /// Serving, ACTIVE.
    Good,
    /// The leader.
    Strong,
    /// DEGRADED, a Warning.
    Warn,
    /// Not serving, DOWN.
    Bad,
}

impl Style {
    fn code(self) -> Option<&'static str> {
        match self {
            Self::Plain => None,
            Self::Good => Some("32"),
            Self::Strong => Some("1;32"),
            Self::Warn => Some("33"),
            Self::Bad => Some("31"),
        }
    }
}

/// `text` in `style`'s colour when `colour`, else as it is.
pub fn paint(text: &str, style: Style, colour: bool) -> String {
    match style.code() {
        Some(code) if colour => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_owned(),
    }
}

/// A table: a header and rows of styled cells, columns three spaces apart as `kubectl get`
/// lays them out.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<(String, Style)>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<(String, Style)>) {
        self.rows.push(cells);
    }

    pub fn render(&self, colour: bool) -> String {
        let header: Vec<(String, Style)> = self
            .header
            .iter()
            .map(|h| (h.clone(), Style::Plain))
            .collect();
        let lines: Vec<&Vec<(String, Style)>> =
            std::iter::once(&header).chain(&self.rows).collect();
        let columns = self.header.len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                lines
                    .iter()
                    .filter_map(|line| line.get(c))
                    .map(|(text, _)| text.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (c, (cell, style)) in line.iter().enumerate() {
                let last = c + 1 == line.len();
                let pad = if last {
                    0
                } else {
                    widths[c] - cell.chars().count() + 3
                };
                text.push_str(&paint(cell, *style, colour));
                text.push_str(&" ".repeat(pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_with_and_without_colour() {
        let mut table = Table::new(&["POD", "STATE", "ZXID"]);
        table.row(vec![
            ("zk-0".into(), Style::Plain),
            ("unreachable".into(), Style::Bad),
            ("-".into(), Style::Plain),
        ]);
        table.row(vec![
            ("zk-10".into(), Style::Plain),
            ("leader".into(), Style::Strong),
            ("0x200000001".into(), Style::Plain),
        ]);
        assert_eq!(
            table.render(false),
            "POD     STATE         ZXID\n\
             zk-0    unreachable   -\n\
             zk-10   leader        0x200000001\n"
        );
        let coloured = table.render(true);
        assert!(
            coloured.contains("\x1b[31munreachable\x1b[0m   -"),
            "{coloured}"
        );
        assert!(
            coloured.contains("\x1b[1;32mleader\x1b[0m        0x2"),
            "{coloured}"
        );
        let stripped = coloured
            .replace("\x1b[31m", "")
            .replace("\x1b[1;32m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, table.render(false));
    }
}
