//! Printing the way kubectl does: aligned columns, or `-o json|yaml|wide`.

use serde::Serialize;

use crate::error::{Error, Result};

/// `-o`: like kubectl's output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// Aligned columns, with more of them.
    Wide,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML.
pub fn structured<T: Serialize>(value: &T, format: Format) -> Result<()> {
    let text = match format {
        Format::Yaml => serde_yaml::to_string(value).map_err(|e| Error::msg(e.to_string()))?,
        _ => {
            let mut text =
                serde_json::to_string_pretty(value).map_err(|e| Error::msg(e.to_string()))?;
            text.push('\n');
            text
        }
    };
    print!("{text}");
    Ok(())
}

/// `rows` under `headers`, columns separated by three spaces, as kubectl
/// prints them.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 3;
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A cell for an optional value: the value, or `<none>` as kubectl prints it.
pub fn cell(value: Option<&str>) -> String {
    value
        .filter(|v| !v.is_empty())
        .unwrap_or("<none>")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_headers() {
        let out = table(
            &["NAME", "ROLE"],
            &[vec!["a-long-name".into(), "Owner".into()]],
        );
        assert_eq!(out, "NAME          ROLE\na-long-name   Owner\n");
    }
}
