//! The parts of `--help` and the manual pages that clap does not derive from the flags:
//! EXAMPLES, ENVIRONMENT, FILES and EXIT STATUS, written once as data and rendered both as the
//! text after `--help` and as roff sections of the man pages (`imgferry man`).

use std::io::Write;

/// One section: a title and its entries (a term and what it means, or a command and what it
/// does).
pub struct Section {
    pub title: &'static str,
    pub entries: &'static [(&'static str, &'static str)],
}

const EXIT_STATUS: Section = Section {
    title: "EXIT STATUS",
    entries: &[
        ("0", "Done (or the reader closed the pipe)."),
        (
            "1",
            "Failed: the state is saved and, when the error says so, imgferry resume ID continues; \
             or a file could not be read.",
        ),
        ("2", "Usage or configuration error: nothing was started."),
        (
            "3",
            "The VHD is invalid or the import service would reject it (or did), with its code.",
        ),
        (
            "4",
            "Interrupted by Ctrl-C or SIGTERM: the state is saved; imgferry resume ID continues.",
        ),
        (
            "5",
            "Authentication failed, or the user lacks the role the step needs.",
        ),
    ],
};

const ENVIRONMENT: Section = Section {
    title: "ENVIRONMENT",
    entries: &[
        (
            "RAX_USERNAME, RAX_API_KEY, RAX_PASSWORD",
            "The source account's credentials (RS_USERNAME, RS_API_KEY and OS_USERNAME, \
             OS_PASSWORD are read too). An API key is preferred to a password.",
        ),
        (
            "RAX_DST_USERNAME, RAX_DST_API_KEY, RAX_DST_PASSWORD",
            "The destination account's, when it is another account.",
        ),
        (
            "RAX_IDENTITY_URL, RAX_DST_IDENTITY_URL",
            "Identity endpoints (a URL, or us / uk), as --identity-url and --to-identity-url.",
        ),
        (
            "OS_CLOUD, OS_CLIENT_CONFIG_FILE, OS_CLIENT_SECURE_FILE",
            "A cloud of an OpenStack clouds.yaml to take credentials from, and where the files \
             are.",
        ),
        (
            "RS_REGION_NAME, OS_REGION_NAME",
            "The default source region, when --from is not given.",
        ),
        (
            "IMGFERRY_STATE_DIR",
            "Where migration state lives, as --state-dir.",
        ),
        (
            "IMGFERRY_HTTP_TIMEOUT, IMGFERRY_RETRIES, IMGFERRY_MAX_BACKOFF",
            "As --http-timeout, --retries and --max-backoff.",
        ),
        ("IMGFERRY_LOG_FILE", "As --log-file."),
        (
            "IMGFERRY_POLL_INTERVAL",
            "As --poll-interval of migrate and resume.",
        ),
        (
            "RUST_LOG",
            "A tracing filter that overrides -v and -q (e.g. imgferry=debug).",
        ),
        ("NO_COLOR", "When set and not empty, no colour."),
    ],
};

/// The state directory, which every command that keeps or reads state uses.
const STATE_DIR: (&str, &str) = (
    "$XDG_STATE_HOME/imgferry, else ~/.local/state/imgferry",
    "Migration and fleet state (mode 0700): one JSON file per migration (m-*.json), fleets under \
     fleets/, spill files under m-*.work/. imgferry forget and imgferry clean remove entries.",
);

const STATE_FILES: Section = Section {
    title: "FILES",
    entries: &[STATE_DIR],
};

const FILES: Section = Section {
    title: "FILES",
    entries: &[
        STATE_DIR,
        (
            "~/.rack/config",
            "Profiles of the rack CLI: --profile NAME, else its default profile.",
        ),
        (
            "clouds.yaml, secure.yaml",
            "OpenStack client configuration, searched as openstacksdk does: the current \
             directory, ~/.config/openstack ($XDG_CONFIG_HOME), /etc/openstack \
             (OS_CLIENT_CONFIG_FILE names another file). --to-cloud and --from-cloud name its \
             clouds.",
        ),
    ],
};

/// One page's examples: each a command line and what it does.
type Examples = &'static [(&'static str, &'static str)];

/// The EXAMPLES of each page: the program's page (""), then one per command.
const EXAMPLES: &[(&str, Examples)] = &[
    (
        "",
        &[
            (
                "imgferry demo",
                "A whole migration against the built-in simulated cloud; nothing to set up.",
            ),
            (
                "imgferry migrate --from DFW --to IAD --server web-1 --boot general1-2",
                "Move server web-1 from DFW to IAD and boot it there.",
            ),
            (
                "imgferry status",
                "Every migration and fleet this machine knows, with its state.",
            ),
            (
                "imgferry resume m-0123456789",
                "Continue where a run stopped.",
            ),
        ],
    ),
    (
        "migrate",
        &[
            (
                "imgferry migrate --from DFW --to IAD --server web-1 --boot general1-2",
                "Image web-1, export it, copy it to IAD, import it and boot a server from it.",
            ),
            (
                "imgferry migrate --from DFW --to IAD --server web-1 --dry-run",
                "Check everything that can be checked and print the plan; create nothing.",
            ),
            (
                "imgferry migrate --from DFW --to-file ./images/ --server web-1",
                "Download the server's image as a VHD into ./images/web-1 ... .vhd.",
            ),
            (
                "imgferry migrate --from DFW --to IAD --all-servers --match '^web-'",
                "Move every server whose name starts with web- as one fleet (servers already \
                 moved on this route are skipped; --new includes them).",
            ),
            (
                "imgferry migrate --to IAD --vhd disk.vhd --name restored",
                "Upload and import a local VHD.",
            ),
            (
                "imgferry migrate --from DFW --server web-1 --to-cloud flex",
                "Move web-1 into the OpenStack cloud flex of clouds.yaml, converted to qcow2 on \
                 the way.",
            ),
            (
                "imgferry migrate --from-cloud flex --image web-1 --to-cloud lab",
                "Move an image between OpenStack clouds (or projects, or regions: --from, --to).",
            ),
            (
                "imgferry migrate --from-cloud flex --image web-1 --to IAD --boot general1-2",
                "Bring an OpenStack image back to a legacy region: made a VHD, imported, booted.",
            ),
        ],
    ),
    (
        "resume",
        &[
            (
                "imgferry resume m-0123456789",
                "Continue a migration from its saved state.",
            ),
            (
                "imgferry resume f-0123456789 --concurrency 8",
                "Continue every unfinished member of a fleet, with more connections.",
            ),
        ],
    ),
    (
        "status",
        &[
            (
                "imgferry status",
                "A table of migrations and one of fleets.",
            ),
            ("imgferry status m-0123456789", "One migration in detail."),
            (
                "imgferry status --output json | jq .",
                "The same as JSON lines.",
            ),
        ],
    ),
    (
        "forget",
        &[
            (
                "imgferry forget m-0123456789",
                "Drop a finished migration, or one that holds nothing in the cloud.",
            ),
            (
                "imgferry forget m-0123456789 --force",
                "Drop an unfinished one too; what it holds is listed for you to delete.",
            ),
        ],
    ),
    (
        "clean",
        &[
            ("imgferry clean", "Drop every finished migration and fleet."),
            (
                "imgferry clean --older-than 7d --dry-run",
                "List those finished more than a week ago.",
            ),
        ],
    ),
    (
        "validate",
        &[
            (
                "imgferry validate disk.vhd",
                "Check a VHD and predict the import's verdict and code.",
            ),
            (
                "imgferry validate --remote DFW imgferry-exports/IMAGE.vhd",
                "The same for an object in Cloud Files, by ranged reads.",
            ),
        ],
    ),
    (
        "demo",
        &[
            ("imgferry demo", "A 1 GiB server moved from DFW to IAD."),
            (
                "imgferry demo --disk-size 64MiB --step-seconds 0.5",
                "A quicker one.",
            ),
        ],
    ),
    (
        "sim",
        &[(
            "imgferry sim serve --listen 127.0.0.1:5000",
            "Serve the simulated cloud; point RAX_IDENTITY_URL at the URL it prints.",
        )],
    ),
    (
        "completions",
        &[(
            "imgferry completions bash > ~/.local/share/bash-completion/completions/imgferry",
            "Install bash completions for one user.",
        )],
    ),
    (
        "man",
        &[(
            "imgferry man --dir ~/.local/share/man/man1",
            "Install every manual page for one user (then man imgferry-migrate).",
        )],
    ),
];

/// The examples of `command`'s page (`None`: the program's).
fn examples(command: Option<&str>) -> Examples {
    let name = command.unwrap_or("");
    EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, e)| e)
}

/// The sections of a page: EXAMPLES, then ENVIRONMENT, FILES and EXIT STATUS for commands that
/// use them.
pub fn sections(command: Option<&str>) -> Vec<Section> {
    let mut out = vec![Section {
        title: "EXAMPLES",
        entries: examples(command),
    }];
    match command {
        None | Some("migrate" | "resume" | "validate") => {
            out.push(ENVIRONMENT);
            out.push(FILES);
        }
        Some("status" | "forget" | "clean" | "demo") => out.push(STATE_FILES),
        Some(_) => {}
    }
    out.push(EXIT_STATUS);
    out.retain(|s| !s.entries.is_empty());
    out
}

/// The sections as text after `--help`.
pub fn help_text(command: Option<&str>) -> String {
    let mut out = String::new();
    for s in sections(command) {
        out.push_str(&format!("{}:\n", title_case(s.title)));
        for (term, text) in s.entries {
            out.push_str(&format!("  {term}\n      {text}\n"));
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// "EXIT STATUS" → "Exit status", as clap writes its own headings.
fn title_case(t: &str) -> String {
    let lower = t.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The sections as roff, for the man pages.
pub fn render_roff(command: Option<&str>, w: &mut dyn Write) -> std::io::Result<()> {
    use roff::{Roff, bold, roman};
    let mut roff = Roff::new();
    for s in sections(command) {
        roff.control("SH", [s.title]);
        for (term, text) in s.entries {
            roff.control("TP", []);
            roff.text([bold(*term)]);
            roff.text([roman(*text)]);
        }
    }
    roff.to_writer(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_examples_and_exit_status() {
        use clap::CommandFactory;
        let cmd = crate::cli::Cli::command();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let text = help_text(Some(sub.get_name()));
            assert!(text.starts_with("Examples:"), "{}: {text}", sub.get_name());
            assert!(text.contains("Exit status:"), "{}", sub.get_name());
        }
        let top = help_text(None);
        for heading in ["Examples:", "Environment:", "Files:", "Exit status:"] {
            assert!(top.contains(heading), "{top}");
        }
        assert!(top.contains("RAX_API_KEY") && top.contains("~/.rack/config"));
    }
}
