//! `unlinker man`: the manual page (roff), generated from the clap types, on stdout. One page:
//! clap_mangen's sections for the program, then a section per command with its arguments.

use clap::CommandFactory;

use super::write_stdout;
use crate::cli::Cli;
use crate::summary::exit;

pub(super) fn man() -> i32 {
    let cmd = Cli::command();
    let mut out = Vec::new();
    if let Err(e) = render(&cmd, &mut out) {
        return super::fatal(&format!("cannot render the manual page: {e}"));
    }
    write_stdout(tidy(&String::from_utf8_lossy(&out)).as_bytes());
    exit::OK
}

fn render(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    for sub in cmd.get_subcommands() {
        out.extend_from_slice(command_section(sub).as_bytes());
    }
    man.render_extra_section(out)?;
    man.render_version_section(out)?;
    Ok(())
}

/// `.SH "UNLINKER RUN"`: the command's usage line, what it does, and each argument.
fn command_section(sub: &clap::Command) -> String {
    let mut s = format!(
        ".SH \"UNLINKER {}\"\n",
        escape(&sub.get_name().to_uppercase())
    );
    let mut usage = format!("\\fBunlinker {}\\fR", escape(sub.get_name()));
    for arg in sub.get_positionals() {
        usage.push_str(&format!(" \\fI{}\\fR", escape(arg.get_id().as_str())));
    }
    if sub.get_opts().next().is_some() {
        usage.push_str(" [\\fIoptions\\fR]");
    }
    s.push_str(&format!("{usage}\n.PP\n"));
    if let Some(about) = sub.get_about() {
        s.push_str(&format!("{}\n", escape(&about.to_string())));
    }
    for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
        let name = match (arg.get_short(), arg.get_long()) {
            (_, Some(long)) => format!("\\-\\-{}", escape(long)),
            (Some(short), None) => format!("\\-{short}"),
            (None, None) => escape(arg.get_id().as_str()),
        };
        let value = match arg.get_value_names() {
            Some(names) if arg.get_long().is_some() && arg.get_action().takes_values() => {
                format!(" \\fI{}\\fR", escape(names[0].as_str()))
            }
            _ => String::new(),
        };
        s.push_str(&format!(".TP\n\\fB{name}\\fR{value}\n"));
        if let Some(help) = arg.get_help() {
            s.push_str(&format!("{}\n", escape(&help.to_string())));
        }
    }
    s
}

/// clap_mangen starts every section with the two lines defining `\*(Aq` (the apostrophe):
/// keep one pair, just after `.TH`, so the page starts with `.TH` as `man` and `whatis` expect.
fn tidy(page: &str) -> String {
    const AQ: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];
    let mut out = String::with_capacity(page.len());
    for line in page.lines().filter(|l| !AQ.contains(l)) {
        out.push_str(line);
        out.push('\n');
        if line.starts_with(".TH ") {
            out.push_str(&format!("{}\n{}\n", AQ[0], AQ[1]));
        }
    }
    out
}

/// Roff-escape text: backslashes, and a leading `.` or `'` that would read as a request.
fn escape(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}
