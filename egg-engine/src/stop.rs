//! How an egg's `config.stop` string maps to a [`StopMethod`], and back for export.
//!
//! | egg string                         | [`StopMethod`]                     | note |
//! |------------------------------------|------------------------------------|------|
//! | plain text (`stop`, `quit`, `/stop`, `shutdown; exit;`) | `Command(text)` | written verbatim, as one console line; not trimmed, `;` is not split |
//! | `^C` (any case)                    | `Signal(SIGINT)`                   | Pterodactyl's documented meaning; the yolks images declare `STOPSIGNAL SIGINT` |
//! | `^^C`, `^X`                        | `Signal(SIGTERM)`                  | see below |
//! | `^SIGTERM`, `^SIGINT`, `^INT`, `^sighup`, ... | that signal ([`StopSignal::from_name`]) | |
//! | any other `^...` (`^FOO`)          | `Signal(SIGTERM)`                  | Pterodactyl treats every `^` string as a signal name |
//! | empty or only whitespace           | `Signal(SIGTERM)`                  | |
//! | `^COMMAND:` + text                 | `Command(text)`                    | Nexus escape, see below |
//!
//! **`^^C` and `^X`.** Wings does not know these spellings and falls back to SIGKILL, which loses
//! whatever the server had not saved. Nexus sends SIGTERM instead, so the server gets a chance
//! to shut down cleanly; like every stop, the process is still killed once the stop timeout runs
//! out, so a server that ignores SIGTERM stops anyway. The same holds for unknown `^` names.
//!
//! Signal detection ignores whitespace around the string (`" ^C\n"` is SIGINT); a command is
//! kept exactly as written, including surrounding whitespace.
//!
//! **Export and the `^COMMAND:` escape.** [`stop_to_egg_string`] writes SIGINT as `^C` (the
//! spelling every panel understands) and other signals as `^SIGTERM`, `^SIGQUIT`, .... A command
//! is written verbatim unless reading it back would not give the same command: an empty or blank
//! command, or one starting with `^` such as a literal `^C` console line. Those cannot be written
//! in any Pterodactyl or Pelican format at all, so Nexus writes them as `^COMMAND:` followed by
//! the command; this keeps `parse_stop(&stop_to_egg_string(m)) == m` for every method. Another
//! panel reads such a string as an unknown signal.

use nexus_core::model::{StopMethod, StopSignal};

/// Prefix Nexus writes before a console command that would otherwise read back as a signal.
pub const COMMAND_ESCAPE: &str = "^COMMAND:";

/// Parses an egg's `config.stop` string. Never fails: every string means something (see the
/// module table).
pub fn parse_stop(s: &str) -> StopMethod {
    if let Some(command) = s.strip_prefix(COMMAND_ESCAPE) {
        return StopMethod::Command(command.to_string());
    }
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return StopMethod::Signal(StopSignal::Terminate);
    }
    let Some(name) = trimmed.strip_prefix('^') else {
        return StopMethod::Command(s.to_string());
    };
    let name = name.trim();
    let signal = if name.eq_ignore_ascii_case("C") {
        StopSignal::Interrupt
    } else if name.eq_ignore_ascii_case("^C") || name.eq_ignore_ascii_case("X") {
        StopSignal::Terminate
    } else {
        StopSignal::from_name(name).unwrap_or(StopSignal::Terminate)
    };
    StopMethod::Signal(signal)
}

/// Writes a [`StopMethod`] as an egg `config.stop` string; [`parse_stop`] reads it back to the
/// same method.
pub fn stop_to_egg_string(m: &StopMethod) -> String {
    match m {
        StopMethod::Signal(StopSignal::Interrupt) => "^C".to_string(),
        StopMethod::Signal(signal) => format!("^{}", signal.name()),
        StopMethod::Command(command) => match parse_stop(command) {
            StopMethod::Command(ref back) if back == command => command.clone(),
            _ => format!("{COMMAND_ESCAPE}{command}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_SIGNALS: [StopSignal; 7] = [
        StopSignal::Interrupt,
        StopSignal::Terminate,
        StopSignal::Quit,
        StopSignal::Hangup,
        StopSignal::User1,
        StopSignal::User2,
        StopSignal::Kill,
    ];

    fn cmd(s: &str) -> StopMethod {
        StopMethod::Command(s.to_string())
    }

    fn sig(s: StopSignal) -> StopMethod {
        StopMethod::Signal(s)
    }

    #[test]
    fn plain_text_is_a_verbatim_command() {
        for s in ["stop", "quit", "/stop", "end", "exit", "shutdown; exit;", "shutdown now", "/quit", " stop "] {
            assert_eq!(parse_stop(s), cmd(s), "{s:?}");
        }
    }

    #[test]
    fn caret_c_is_sigint() {
        assert_eq!(parse_stop("^C"), sig(StopSignal::Interrupt));
        assert_eq!(parse_stop("^c"), sig(StopSignal::Interrupt));
        assert_eq!(parse_stop(" ^C\n"), sig(StopSignal::Interrupt));
    }

    #[test]
    fn double_caret_c_and_caret_x_are_sigterm() {
        assert_eq!(parse_stop("^^C"), sig(StopSignal::Terminate));
        assert_eq!(parse_stop("^^c"), sig(StopSignal::Terminate));
        assert_eq!(parse_stop("^X"), sig(StopSignal::Terminate));
        assert_eq!(parse_stop("^x"), sig(StopSignal::Terminate));
    }

    #[test]
    fn named_signals() {
        assert_eq!(parse_stop("^SIGTERM"), sig(StopSignal::Terminate));
        assert_eq!(parse_stop("^SIGINT"), sig(StopSignal::Interrupt));
        assert_eq!(parse_stop("^INT"), sig(StopSignal::Interrupt));
        assert_eq!(parse_stop("^sighup"), sig(StopSignal::Hangup));
        assert_eq!(parse_stop("^SIGKILL"), sig(StopSignal::Kill));
        assert_eq!(parse_stop("^QUIT"), sig(StopSignal::Quit));
        assert_eq!(parse_stop("^SIGUSR1"), sig(StopSignal::User1));
        assert_eq!(parse_stop("^USR2"), sig(StopSignal::User2));
        for s in ALL_SIGNALS {
            assert_eq!(parse_stop(&format!("^{}", s.name())), sig(s));
        }
    }

    #[test]
    fn unknown_caret_and_empty_are_sigterm() {
        assert_eq!(parse_stop("^FOO"), sig(StopSignal::Terminate));
        assert_eq!(parse_stop("^"), sig(StopSignal::Terminate));
        assert_eq!(parse_stop(""), sig(StopSignal::Terminate));
        assert_eq!(parse_stop("  \n"), sig(StopSignal::Terminate));
    }

    #[test]
    fn export_spellings() {
        assert_eq!(stop_to_egg_string(&sig(StopSignal::Interrupt)), "^C");
        assert_eq!(stop_to_egg_string(&sig(StopSignal::Terminate)), "^SIGTERM");
        assert_eq!(stop_to_egg_string(&sig(StopSignal::Kill)), "^SIGKILL");
        assert_eq!(stop_to_egg_string(&cmd("stop")), "stop");
        assert_eq!(stop_to_egg_string(&cmd("shutdown; exit;")), "shutdown; exit;");
        assert_eq!(stop_to_egg_string(&cmd("^C")), "^COMMAND:^C");
        assert_eq!(stop_to_egg_string(&cmd("")), "^COMMAND:");
        assert_eq!(stop_to_egg_string(&cmd("^COMMAND:x")), "^COMMAND:^COMMAND:x");
    }

    #[test]
    fn corpus_stop_strings_round_trip() {
        for s in ["^C", "quit", "stop", "exit", "^^C", "end", "/quit", "shutdown; exit;", "^X", "/shutdown", "/stop"] {
            let m = parse_stop(s);
            assert_eq!(parse_stop(&stop_to_egg_string(&m)), m, "{s:?}");
        }
    }

    #[test]
    fn every_signal_round_trips() {
        for s in ALL_SIGNALS {
            let m = sig(s);
            assert_eq!(parse_stop(&stop_to_egg_string(&m)), m);
        }
    }

    #[test]
    fn tricky_commands_round_trip() {
        for s in ["", " ", "\n", "^C", " ^C", "^^C", "^SIGTERM", "^COMMAND:", "^COMMAND:stop", "^", "stop\n", "^foo"] {
            let m = cmd(s);
            assert_eq!(parse_stop(&stop_to_egg_string(&m)), m, "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn any_command_round_trips(s in any::<String>()) {
            let m = cmd(&s);
            prop_assert_eq!(parse_stop(&stop_to_egg_string(&m)), m);
        }

        #[test]
        fn caret_commands_round_trip(s in "[ ^]{0,3}(C|X|\\^C|SIG[A-Z]{0,4}|COMMAND:)?[ -~\n]{0,8}") {
            let m = cmd(&s);
            prop_assert_eq!(parse_stop(&stop_to_egg_string(&m)), m);
        }

        #[test]
        fn parse_never_panics_and_export_is_stable(s in any::<String>()) {
            let m = parse_stop(&s);
            prop_assert_eq!(parse_stop(&stop_to_egg_string(&m)), m);
        }
    }
}
