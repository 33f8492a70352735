//! The pages of the commands about pidbeat itself: `completions` and `man`.

use super::{OK, Page, USAGE};

pub const COMPLETIONS: Page = Page {
    description: "Prints the registration script of the dynamic completion engine for SHELL. Install it once; it needs no update when pidbeat changes.",
    exit_line: "Exit status: 0 success, 2 unknown shell.",
    examples: &[
        (
            "pidbeat completions bash > ~/.local/share/bash-completion/completions/pidbeat",
            "install for bash (new shells pick it up)",
        ),
        (
            "echo 'source <(pidbeat completions zsh)' >> ~/.zshrc",
            "install for zsh (after compinit)",
        ),
        (
            "pidbeat completions fish > ~/.config/fish/completions/pidbeat.fish",
            "install for fish",
        ),
    ],
    exit: &[OK, ("2", "unknown shell")],
    sections: &[(
        "HOW IT COMPLETES",
        &[(
            "",
            "The script asks `pidbeat` on PATH at each TAB, so completions always match the installed version: agent names from the run dir (--run-dir on the line, else the environment), PIDs with their command names for --pid, and commands after `run --`.",
        )],
    )],
    env: &[(
        "PIDBEAT_COMPLETE",
        "set by the completion script when it calls pidbeat for candidates; not for other use",
    )],
    files: &[(
        "<run-dir>/*.hb",
        "read for agent names when completing (never written)",
    )],
    see_also: &[],
};

pub const MAN: Page = Page {
    description: "Prints pidbeat(1) as roff on stdout; with --dir, writes pidbeat.1 and one pidbeat-SUB.1 per subcommand, from the same definitions as --help.",
    exit_line: "Exit status: 0 success, 1 a page cannot be written, 2 usage error.",
    examples: &[
        (
            "pidbeat man | man -l -",
            "read pidbeat(1) without installing it",
        ),
        (
            "pidbeat man --dir ~/.local/share/man/man1",
            "install pidbeat(1) and a page per subcommand; then `man pidbeat-ps`",
        ),
    ],
    exit: &[OK, ("1", "a page cannot be written"), USAGE],
    sections: &[],
    env: &[],
    files: &[
        ("DIR/pidbeat.1", "the top-level page, written by --dir"),
        (
            "DIR/pidbeat-SUB.1",
            "one page per subcommand, written by --dir",
        ),
    ],
    see_also: &[],
};
