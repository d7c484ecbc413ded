//! Progress on stderr for the long stages (`curate`, `discover`, `train`, `eval`, `select`):
//! an `indicatif` bar or spinner drawn only when stderr is a terminal — with `--json` too, since
//! the JSON goes to stdout — and nothing at all otherwise (logs and pipes stay clean).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn (stderr is a terminal and `NO_PROGRESS` is unset).
pub fn visible() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_PROGRESS").is_none()
}

fn target() -> ProgressDrawTarget {
    if visible() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar over `len` items, labelled `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let pb = ProgressBar::with_draw_target(Some(len), target())
        .with_style(style)
        .with_prefix(what.to_owned());
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

/// [`bar`] when `show`, else a hidden bar (a stage run inside the loop or the demo draws none).
pub fn bar_if(show: bool, len: u64, what: &str) -> ProgressBar {
    if show {
        bar(len, what)
    } else {
        ProgressBar::hidden()
    }
}

/// [`spinner`] when `show`, else a hidden one.
pub fn spinner_if(show: bool, what: &str) -> ProgressBar {
    if show {
        spinner(what)
    } else {
        ProgressBar::hidden()
    }
}

/// A spinner for work of unknown length, labelled `what`; `set_message` says the stage.
pub fn spinner(what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let pb = ProgressBar::with_draw_target(None, target())
        .with_style(style)
        .with_prefix(what.to_owned());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_off_a_terminal_and_counts_anyway() {
        // Test runners capture stderr: nothing is drawn, but the bar still counts.
        let pb = bar(3, "eval");
        pb.inc(2);
        assert_eq!(pb.position(), 2);
        assert_eq!(pb.length(), Some(3));
        assert!(pb.is_hidden());
        pb.finish_and_clear();
        let s = spinner("discover");
        s.set_message("embedding");
        assert!(s.is_hidden());
        s.finish_and_clear();
    }
}
