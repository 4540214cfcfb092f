//! Tables for people (`status`, a fleet's members): borderless columns two spaces apart, wrapped
//! to the terminal's width when stdout is one (comfy-table measures it), never cut; ids, states
//! and other short columns are never wrapped, only the long free-text ones.

use comfy_table::{ColumnConstraint, ContentArrangement, Table, presets};

/// A table with this header; the columns at `whole` are never wrapped.
pub fn new(header: &[&str], whole: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if whole.contains(&i) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    t
}

/// Prints `t` on stdout without trailing blanks.
pub fn print(t: &Table) {
    println!("{}", t.trim_fmt());
}

/// How long ago `secs` seconds was, in one unit: 42s, 17m, 5h, 3d.
pub fn age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}
