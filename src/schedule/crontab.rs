//! The managed block `backup apply` keeps in a crontab, so that the host's
//! cron starts `backup apply` on every policy's schedule.
//!
//! The block sits between [`BEGIN_MARKER`] and [`END_MARKER`], in the
//! invoking user's crontab (through the `crontab` program) or in a file such
//! as `/etc/cron.d/backup`. Everything outside the block belongs to whoever
//! wrote it and is never changed, byte for byte. Rendering, finding and
//! splicing the block are pure; only [`read`], [`write`], [`host_timezone`]
//! and [`Target::describe`] touch the system. Nothing here decides what is
//! due: cron only wakes `backup apply`, which reads the inventory and decides,
//! so a line may fire more often than its schedule but never less.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use chrono::{DateTime, Offset as _, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;

use super::Schedule;

/// The first line of the managed block.
pub const BEGIN_MARKER: &str =
    "# BEGIN backup managed block (written by `backup apply`; edits here are overwritten)";
/// The last line of the managed block.
pub const END_MARKER: &str = "# END backup managed block";

/// Marker lines are recognised by these prefixes, so that a marker someone
/// edited is still found (and reported) rather than duplicated.
const BEGIN_PREFIX: &str = "# BEGIN backup managed block";
const END_PREFIX: &str = "# END backup managed block";

/// How far ahead the offsets of two time zones are compared.
const HORIZON: TimeDelta = TimeDelta::days(2 * 366);

/// Above this many minutes in an hour, a line simply runs every minute.
const MAX_LISTED_MINUTES: usize = 30;

/// Why the crontab could not be read, changed or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the `crontab` program is not installed; install cron (Debian: `apt-get install cron`) \
         or write a cron.d file with `--crontab-file /etc/cron.d/backup`"
    )]
    NotInstalled,
    #[error(
        "the managed crontab block is malformed: {0}; fix it by hand so that one \
         `# BEGIN backup managed block …` line is followed by one `# END backup managed block` \
         line (or delete both, and the lines between them), then run `backup apply` again"
    )]
    Malformed(String),
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Crontab {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot write {what} into a crontab line: {reason}")]
    Unrepresentable { what: String, reason: &'static str },
}

/// Where the managed block lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user's crontab, through the `crontab` program: the invoking user's
    /// (`None`), or the named user's (`crontab -u NAME`, which needs root).
    User(Option<String>),
    /// A crontab file in system format (a user field before each command),
    /// such as `/etc/cron.d/backup`.
    File(PathBuf),
}

impl Target {
    /// For messages: "the crontab of user root", "/etc/cron.d/backup".
    pub fn describe(&self) -> String {
        match self {
            Target::User(Some(user)) => format!("the crontab of user {user}"),
            Target::User(None) => match invoking_user() {
                Some(user) => format!("the crontab of user {user}"),
                None => "the invoking user's crontab".to_owned(),
            },
            Target::File(path) => path.display().to_string(),
        }
    }
}

/// Why cron would skip a crontab file with this name, if it would: cron
/// reads only the files in `/etc/cron.d` whose names are letters, digits,
/// `_` and `-` (Debian's and Vixie cron's rule; `backup.cron` or
/// `backup.txt` is silently ignored there).
pub fn file_name_warning(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy();
    let readable = name
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || matches!(character, '_' | '-'));
    (!readable).then(|| {
        format!(
            "cron ignores files in /etc/cron.d whose names hold anything but letters, digits, `_` and `-`, so it would not run `{}` from there; name it like `/etc/cron.d/backup`",
            path.display()
        )
    })
}

/// One policy's line.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub policy: &'a str,
    pub schedule: &'a Schedule,
    /// What the line is for beside the policy's name in its comment: empty
    /// for its backups, ` base backups` for `spec.physical`'s schedule.
    pub label: &'a str,
}

/// What every line runs; all absolute.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The `backup` binary.
    pub binary: PathBuf,
    /// Each `--policies` path, in order.
    pub policy_paths: Vec<PathBuf>,
    pub state_dir: PathBuf,
    /// Each line appends its output to `<log_dir>/<policy>.log`.
    pub log_dir: PathBuf,
    /// The crontab file the block lives in, when not the user's crontab: the
    /// runs cron starts manage that file too, not the user's crontab.
    pub crontab_file: Option<PathBuf>,
}

/// The block (markers included, every line ending in '\n'), or "" when there
/// are no lines. Lines come sorted by policy name, each after a comment
/// `# <policy>: <expression> (<timezone>)`, then the daily health check
/// (`backup status --notify-critical` at [`STATUS_SCHEDULE`], so a host whose
/// backups silently stopped still alerts); `user_field` is for system
/// crontabs (`/etc/cron.d`), which name the user to run as.
///
/// cron reads a line's schedule on the host's clock (`host_timezone`). A
/// policy whose clock matches the host's over the next two years from `now`
/// gets its expression verbatim; any other gets a line that fires hourly at
/// every minute where one of its ticks can fall on the host's clock, and
/// `backup apply` decides at each run whether a tick is due.
pub fn render_block(
    lines: &[Line],
    invocation: &Invocation,
    host_timezone: Tz,
    user_field: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    if lines.is_empty() {
        return Ok(String::new());
    }
    let user = user_field
        .map(|user| {
            if user.is_empty() || user.contains(char::is_whitespace) {
                Err(Error::Unrepresentable {
                    what: format!("user `{user}`"),
                    reason: "a user name must be one word",
                })
            } else {
                Ok(format!("{user} "))
            }
        })
        .transpose()?
        .unwrap_or_default();
    let mut sorted: Vec<&Line> = lines.iter().collect();
    sorted.sort_by_key(|line| line.policy);
    let mut block = format!("{BEGIN_MARKER}\n");
    for line in sorted {
        let (fields, note) = host_fields(line.schedule, host_timezone, now);
        one_line("policy name", line.policy)?;
        block.push_str(&format!(
            "# {}{}: {} ({}){}\n{fields} {user}{}\n",
            line.policy,
            line.label,
            line.schedule.expression(),
            line.schedule.timezone(),
            note.map(|note| format!(" ({note})")).unwrap_or_default(),
            command(invocation, line.policy)?,
        ));
    }
    block.push_str(&format!(
        "# health: `backup status` daily, notifying policies that turn critical (host clock)\n{STATUS_SCHEDULE} {user}{}\n",
        status_command(invocation)?
    ));
    block.push_str(END_MARKER);
    block.push('\n');
    Ok(block)
}

/// The current block in `text`, markers included (with the END line's
/// newline, if any); Err when the markers are malformed (END before BEGIN,
/// BEGIN without END, two blocks).
pub fn find_block(text: &str) -> Result<Option<Range<usize>>, Error> {
    let mut begin: Option<(usize, usize)> = None;
    let mut found: Option<(Range<usize>, usize)> = None;
    let mut start = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let content = line.trim();
        if content.starts_with(BEGIN_PREFIX) {
            if let Some((_, begin_line)) = begin {
                return Err(Error::Malformed(format!(
                    "line {number} begins a block while the one from line {begin_line} has not ended"
                )));
            }
            if let Some((_, first_line)) = found {
                return Err(Error::Malformed(format!(
                    "line {number} begins a second block (the first begins on line {first_line})"
                )));
            }
            begin = Some((start, number));
        } else if content.starts_with(END_PREFIX) {
            match begin.take() {
                Some((block_start, begin_line)) => {
                    found = Some((block_start..start + line.len(), begin_line));
                }
                None => {
                    return Err(Error::Malformed(format!(
                        "line {number} ends a block that no line begins"
                    )));
                }
            }
        }
        start += line.len();
    }
    if let Some((_, begin_line)) = begin {
        return Err(Error::Malformed(format!(
            "line {begin_line} begins a block that no line ends"
        )));
    }
    Ok(found.map(|(range, _)| range))
}

/// `text` with its block replaced by `block`: appended at the end when absent
/// (after a '\n' if `text` does not end with one), removed when `block` is "".
pub fn splice(text: &str, block: &str) -> Result<String, Error> {
    Ok(match find_block(text)? {
        Some(range) => format!("{}{block}{}", &text[..range.start], &text[range.end..]),
        None if block.is_empty() => text.to_owned(),
        None if text.is_empty() || text.ends_with('\n') => format!("{text}{block}"),
        None => format!("{text}\n{block}"),
    })
}

/// What removing the managed block from `text` changes, as a diff; None
/// when there is no block.
pub fn removal(text: &str) -> Result<Option<String>, Error> {
    Ok(find_block(text)?.map(|range| diff(&text[range], "")))
}

/// Replaces the managed block of `target` with `block` ("" removes it). The
/// target is read again first, so lines outside the block stay as they are
/// now; the caller holds the crontab lock.
pub fn replace_block(target: &Target, block: &str) -> Result<(), Error> {
    let text = read(target)?;
    let updated = splice(&text, block)?;
    write(target, &updated)
}

/// Unified diff (3 lines of context, headers "current" / "planned"); "" when
/// the two are equal.
pub fn diff(current: &str, planned: &str) -> String {
    similar::TextDiff::from_lines(current, planned)
        .unified_diff()
        .context_radius(3)
        .header("current", "planned")
        .to_string()
}

/// Reads the target's whole text: `crontab -l` ("no crontab for X" is "");
/// a missing file is "". [`Error::NotInstalled`] when there is no `crontab`
/// program.
pub fn read(target: &Target) -> Result<String, Error> {
    match target {
        Target::File(path) => match fs::read_to_string(path) {
            Ok(text) => Ok(text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(Error::Io {
                what: format!("read {}", path.display()),
                source,
            }),
        },
        Target::User(user) => {
            let (mut command, shown) = crontab(user.as_deref(), "-l");
            let output = command
                .output()
                .map_err(|error| spawn_error(error, &shown))?;
            if output.status.success() {
                let text = String::from_utf8(output.stdout).map_err(|_| Error::Io {
                    what: format!("read the output of `{shown}`"),
                    source: io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8"),
                })?;
                Ok(strip_header(&text).to_owned())
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
                if stderr.starts_with("no crontab for") {
                    Ok(String::new())
                } else {
                    Err(Error::Crontab {
                        command: shown,
                        status: output.status,
                        stderr,
                    })
                }
            }
        }
    }
}

/// Writes the whole text: `crontab -` with the text on stdin (a crontab that
/// cron cannot read is refused, and its complaint is in the error); a file is
/// written to a temporary file in the same folder (a name with a dot, which
/// cron skips in `/etc/cron.d`), given mode 0644, synced and renamed over it.
pub fn write(target: &Target, text: &str) -> Result<(), Error> {
    match target {
        Target::File(path) => write_file(path, text),
        Target::User(user) => {
            let (mut command, shown) = crontab(user.as_deref(), "-");
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|error| spawn_error(error, &shown))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A crontab that quits early says why on stderr, read below.
                match stdin.write_all(text.as_bytes()) {
                    Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
                        return Err(Error::Io {
                            what: format!("write to `{shown}`"),
                            source: error,
                        });
                    }
                    _ => {}
                }
            }
            let output = child.wait_with_output().map_err(|source| Error::Io {
                what: format!("wait for `{shown}`"),
                source,
            })?;
            if output.status.success() {
                Ok(())
            } else {
                Err(Error::Crontab {
                    command: shown,
                    status: output.status,
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                })
            }
        }
    }
}

/// The host's time zone as cron sees it: `TZ` if it names an IANA zone,
/// else the zone `/etc/localtime` links to, else `/etc/timezone`, else UTC.
pub fn host_timezone() -> Tz {
    let variable = std::env::var("TZ").ok();
    let link = fs::read_link("/etc/localtime").ok();
    let file = fs::read_to_string("/etc/timezone").ok();
    timezone_from(variable.as_deref(), link.as_deref(), file.as_deref())
}

/// [`host_timezone`] from what it read.
fn timezone_from(variable: Option<&str>, link: Option<&Path>, file: Option<&str>) -> Tz {
    let zone = |name: &str| -> Option<Tz> {
        let name = name.trim();
        // POSIX lets TZ start with `:`, and name a file under zoneinfo/.
        let name = name.strip_prefix(':').unwrap_or(name);
        let name = name.rsplit_once("zoneinfo/").map_or(name, |(_, name)| name);
        let name = ["posix/", "right/"]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .unwrap_or(name);
        name.parse().ok()
    };
    variable
        .and_then(zone)
        .or_else(|| {
            link.and_then(Path::to_str)
                .filter(|link| link.contains("zoneinfo/"))
                .and_then(zone)
        })
        .or_else(|| file.and_then(zone))
        .unwrap_or(Tz::UTC)
}

/// The five fields cron should fire a schedule's line on, when the host's
/// clock is `host`, with a note for the comment when they differ in kind from
/// the schedule.
///
/// When the two clocks agree at every instant over the next two years (same
/// zone, two names for UTC, two zones with the same rules), cron's reading
/// of the expression is the policy's own, DST changes included: the
/// expression is used as written. (One exception: both day fields restricted
/// and one starting with `*`, which cron reads as "both must match" and croner
/// as "either"; the line then runs daily and apply decides.)
///
/// Otherwise the line runs every hour, at each minute where a tick can land on
/// the host's clock: each of the schedule's minutes shifted by each offset
/// difference the two zones will have, plus the minute of each of the
/// policy's clock changes at which it ticks (a job in a skipped hour runs
/// right after the jump). Hours and days are left to apply.
fn host_fields(schedule: &Schedule, host: Tz, now: DateTime<Utc>) -> (String, Option<String>) {
    let policy = schedule.timezone();
    let start = DateTime::from_timestamp(now.timestamp() - now.timestamp().rem_euclid(3600), 0)
        .unwrap_or(now);
    let end = start + HORIZON;
    let policy_changes = offset_changes(policy, start, end);
    let instants: Vec<DateTime<Utc>> = std::iter::once(start)
        .chain(policy_changes.iter().copied())
        .chain(offset_changes(host, start, end))
        .collect();
    let differences: BTreeSet<i64> = instants
        .iter()
        .map(|at| offset_seconds(policy, *at) - offset_seconds(host, *at))
        .collect();
    if differences.iter().all(|difference| *difference == 0) {
        return same_clock_fields(schedule.expression());
    }
    let mut minutes = BTreeSet::new();
    for minute in schedule.minutes() {
        for difference in &differences {
            let seconds = (i64::from(minute) * 60 - difference).rem_euclid(3600);
            minutes.insert(seconds / 60);
            // An offset with seconds (none since the 1970s) falls between two minutes.
            minutes.insert((seconds + 59) / 60 % 60);
        }
    }
    for change in policy_changes {
        if schedule.latest_at_or_before(change) == Some(change) {
            let host_seconds = change.timestamp() + offset_seconds(host, change);
            minutes.insert(host_seconds.rem_euclid(3600) / 60);
        }
    }
    if minutes.len() > MAX_LISTED_MINUTES {
        return (
            "* * * * *".to_owned(),
            Some("runs every minute; apply decides what is due".to_owned()),
        );
    }
    let list: Vec<String> = minutes.iter().map(ToString::to_string).collect();
    (
        format!("{} * * * *", list.join(",")),
        Some(format!("{}; apply decides what is due", how_often(&list))),
    )
}

/// How often a line firing at `minutes` of every hour runs, in words:
/// `runs hourly` for one minute, `runs at minutes 0 and 30 of every hour`.
fn how_often(minutes: &[String]) -> String {
    match minutes {
        [] | [_] => "runs hourly".to_owned(),
        [init @ .., last] => format!(
            "runs at minutes {} and {last} of every hour",
            init.join(", ")
        ),
    }
}

/// The expression as cron should read it on a host with the policy's clock.
fn same_clock_fields(expression: &str) -> (String, Option<String>) {
    if expression.starts_with('@') {
        // Debian's cron reads every nickname a schedule accepts.
        return (expression.to_owned(), None);
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if let [minute, hour, day_of_month, month, day_of_week] = fields[..]
        && day_of_month != "*"
        && day_of_week != "*"
        && (day_of_month.starts_with('*') || day_of_week.starts_with('*'))
    {
        return (
            format!("{minute} {hour} * {month} *"),
            Some("runs daily; apply decides what is due".to_owned()),
        );
    }
    (fields.join(" "), None)
}

/// The instants (to the minute) in `[from, to)` at which `timezone`'s offset
/// changes; `from` must be a whole minute. Assumes at most one change a day.
pub(super) fn offset_changes(
    timezone: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let mut changes = Vec::new();
    let mut day = from;
    let mut offset = offset_seconds(timezone, day);
    while day < to {
        let next = day + TimeDelta::days(1);
        let next_offset = offset_seconds(timezone, next);
        if next_offset != offset {
            // Invariant: `low` has the old offset, `high` the new one.
            let (mut low, mut high) = (day, next);
            while high - low > TimeDelta::minutes(1) {
                let minutes = (high - low).num_minutes() / 2;
                let middle = low + TimeDelta::minutes(minutes);
                if offset_seconds(timezone, middle) == offset {
                    low = middle;
                } else {
                    high = middle;
                }
            }
            changes.push(high);
            offset = next_offset;
        }
        day = next;
    }
    changes
}

fn offset_seconds(timezone: Tz, at: DateTime<Utc>) -> i64 {
    i64::from(
        timezone
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// The command of one policy's line, ready for cron: every word quoted for
/// `sh`, and every `%` escaped for cron.
fn command(invocation: &Invocation, policy: &str) -> Result<String, Error> {
    let arguments = vec![
        "apply".to_owned(),
        "--policy".to_owned(),
        shell_word(one_line("policy name", policy)?),
        "--auto-approve".to_owned(),
    ];
    command_line(invocation, arguments, &format!("{policy}.log"))
}

/// The daily health check's command: `backup status --notify-critical`,
/// its output appended to `<log_dir>/_status.log` (no policy name starts with `_`).
fn status_command(invocation: &Invocation) -> Result<String, Error> {
    let arguments = vec!["status".to_owned(), "--notify-critical".to_owned()];
    command_line(invocation, arguments, STATUS_LOG)
}

/// The status line's log file, in the log folder.
pub const STATUS_LOG: &str = "_status.log";

/// When the status line runs, on the host's clock.
pub const STATUS_SCHEDULE: &str = "30 7 * * *";

fn command_line(
    invocation: &Invocation,
    arguments: Vec<String>,
    log_name: &str,
) -> Result<String, Error> {
    let mut words = vec![path_word("the backup binary", &invocation.binary)?];
    for path in &invocation.policy_paths {
        words.push("--policies".to_owned());
        words.push(path_word("a policies path", path)?);
    }
    words.push("--state-dir".to_owned());
    words.push(path_word("the state directory", &invocation.state_dir)?);
    words.extend(arguments);
    if let Some(file) = &invocation.crontab_file {
        words.push("--crontab-file".to_owned());
        words.push(path_word("the crontab file", file)?);
    }
    let log = invocation.log_dir.join(log_name);
    Ok(format!(
        "{} >>{} 2>&1",
        words.join(" "),
        path_word("the log directory", &log)?
    ))
}

/// An absolute, UTF-8, one-line path as a word for [`shell_word`].
fn path_word(what: &str, path: &Path) -> Result<String, Error> {
    let unrepresentable = |reason| Error::Unrepresentable {
        what: format!("{what} {}", path.display()),
        reason,
    };
    if !path.is_absolute() {
        return Err(unrepresentable(
            "it is not absolute, and cron runs commands from the home directory",
        ));
    }
    let text = path
        .to_str()
        .ok_or_else(|| unrepresentable("it is not UTF-8"))?;
    Ok(shell_word(one_line(what, text)?))
}

/// `text` if it fits on one crontab line.
fn one_line<'a>(what: &str, text: &'a str) -> Result<&'a str, Error> {
    if text.contains(['\n', '\r', '\0']) {
        return Err(Error::Unrepresentable {
            what: format!("{what} {text:?}"),
            reason: "a crontab line cannot hold a line break or NUL",
        });
    }
    Ok(text)
}

/// One `sh` word for cron: single-quoted (`'` written as `'\''`), with each
/// `%` outside the quotes as `\%`. cron turns `\%` into `%` and an unescaped
/// `%` into a line break, even inside quotes; and it reads `\` followed by
/// any other character as a pair it keeps, so a `\%` inside quotes right
/// after a backslash of the text (`'a\\%'`) would not be an escape. Outside
/// the quotes, a `%` is always preceded by a quote or another `\%`.
fn shell_word(text: &str) -> String {
    if text.is_empty() {
        return "''".to_owned();
    }
    text.split('%')
        .map(|part| {
            if part.is_empty() {
                String::new()
            } else {
                format!("'{}'", part.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(r"\%")
}

/// `crontab [-u USER] ARG`, and how to show it in messages.
fn crontab(user: Option<&str>, argument: &str) -> (Command, String) {
    let mut command = Command::new("crontab");
    let mut shown = "crontab".to_owned();
    if let Some(user) = user {
        command.args(["-u", user]);
        shown.push_str(&format!(" -u {user}"));
    }
    command.arg(argument);
    shown.push_str(&format!(" {argument}"));
    // Debian's `crontab -l` prints its "DO NOT EDIT" header when
    // CRONTAB_NOHEADER=N, and the header would then pile up on each write.
    command.env_remove("CRONTAB_NOHEADER").env("LC_ALL", "C");
    (command, shown)
}

fn spawn_error(error: io::Error, shown: &str) -> Error {
    if error.kind() == io::ErrorKind::NotFound {
        Error::NotInstalled
    } else {
        Error::Io {
            what: format!("run `{shown}`"),
            source: error,
        }
    }
}

/// `text` without the three-line header that Vixie cron's `crontab` puts at
/// the top of an installed crontab, when `crontab -l` printed it anyway.
fn strip_header(text: &str) -> &str {
    let mut lines = text.split_inclusive('\n');
    let header = [
        lines.next().filter(|line| {
            line.starts_with("# DO NOT EDIT THIS FILE - edit the master and reinstall.")
        }),
        lines
            .next()
            .filter(|line| line.starts_with("# (") && line.contains(" installed on ")),
        lines
            .next()
            .filter(|line| line.starts_with("# (Cron version")),
    ];
    if header.iter().all(Option::is_some) {
        let length: usize = header.iter().flatten().map(|line| line.len()).sum();
        &text[length..]
    } else {
        text
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    let io_error = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| Error::Io { what, source }
    };
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".backup.")
        .tempfile_in(folder)
        .map_err(io_error("create a temporary file next to"))?;
    file.write_all(text.as_bytes())
        .map_err(io_error("write a temporary file for"))?;
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_error("set the mode of a temporary file for"))?;
    file.as_file()
        .sync_all()
        .map_err(io_error("sync a temporary file for"))?;
    file.persist(path)
        .map_err(|error| error.error)
        .map_err(io_error("rename a temporary file over"))?;
    fs::File::open(folder)
        .and_then(|folder| folder.sync_all())
        .map_err(io_error("sync the folder of"))?;
    Ok(())
}

/// The invoking user's name: the effective user's (`id -un`; after `su`
/// without `-`, `$USER` still names the old user), else `$USER`, `$LOGNAME`.
pub fn invoking_user() -> Option<String> {
    let effective = Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|output| {
            let user = String::from_utf8(output.stdout).ok()?.trim().to_owned();
            (output.status.success() && !user.is_empty()).then_some(user)
        });
    effective.or_else(|| {
        ["USER", "LOGNAME"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|user| !user.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(year: i32, month: u32, day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, 0, 0, 0).unwrap()
    }

    fn invocation(root: &Path) -> Invocation {
        Invocation {
            binary: root.join("bin/backup"),
            policy_paths: vec![root.join("policies")],
            state_dir: root.join("state"),
            log_dir: root.join("log"),
            crontab_file: None,
        }
    }

    /// The fields and note of one schedule's line.
    fn fields(expression: &str, policy_zone: &str, host_zone: &str) -> (String, Option<String>) {
        let schedule = Schedule::parse(expression, policy_zone).unwrap();
        host_fields(&schedule, host_zone.parse().unwrap(), at(2026, 1, 1))
    }

    /// What cron hands to `sh`, as Vixie cron's `do_command.c` does it: `\%`
    /// becomes `%`, a backslash before any other character stays (and that
    /// character is not looked at), and an unescaped `%` ends the command.
    fn as_cron_runs(command: &str) -> String {
        let mut out = String::new();
        let mut escaped = false;
        for character in command.chars() {
            if escaped {
                if character == '%' {
                    out.pop();
                }
                out.push(character);
                escaped = false;
                continue;
            }
            escaped = character == '\\';
            assert_ne!(character, '%', "an unescaped % in {command}");
            out.push(character);
        }
        out
    }

    #[test]
    fn a_block_lists_each_policy_after_a_comment() {
        let berlin = Schedule::parse("0 1 * * *", "Europe/Berlin").unwrap();
        let utc = Schedule::parse("@daily", "UTC").unwrap();
        let lines = [
            Line {
                policy: "zeta",
                schedule: &utc,
                label: "",
            },
            Line {
                policy: "app-db",
                schedule: &berlin,
                label: "",
            },
        ];
        let block = render_block(
            &lines,
            &invocation(Path::new("/opt/backup")),
            Tz::Etc__UTC,
            None,
            at(2026, 1, 1),
        )
        .unwrap();
        insta::assert_snapshot!(block, @r"
        # BEGIN backup managed block (written by `backup apply`; edits here are overwritten)
        # app-db: 0 1 * * * (Europe/Berlin) (runs hourly; apply decides what is due)
        0 * * * * '/opt/backup/bin/backup' --policies '/opt/backup/policies' --state-dir '/opt/backup/state' apply --policy 'app-db' --auto-approve >>'/opt/backup/log/app-db.log' 2>&1
        # zeta: @daily (UTC)
        @daily '/opt/backup/bin/backup' --policies '/opt/backup/policies' --state-dir '/opt/backup/state' apply --policy 'zeta' --auto-approve >>'/opt/backup/log/zeta.log' 2>&1
        # health: `backup status` daily, notifying policies that turn critical (host clock)
        30 7 * * * '/opt/backup/bin/backup' --policies '/opt/backup/policies' --state-dir '/opt/backup/state' status --notify-critical >>'/opt/backup/log/_status.log' 2>&1
        # END backup managed block
        ");
        let system = render_block(
            &lines[1..],
            &invocation(Path::new("/opt/backup")),
            Tz::Europe__Berlin,
            Some("root"),
            at(2026, 1, 1),
        )
        .unwrap();
        assert!(
            system.contains("\n0 1 * * * root '/opt/backup/bin/backup' "),
            "{system}"
        );
        assert_eq!(
            render_block(
                &[],
                &invocation(Path::new("/x")),
                Tz::UTC,
                None,
                at(2026, 1, 1)
            )
            .unwrap(),
            ""
        );
    }

    #[test]
    fn weird_paths_reach_the_command_exactly_as_cron_runs_it() {
        let temporary = tempfile::tempdir().unwrap();
        let root = temporary
            .path()
            .join(r#"we'ird $HOME `id` "q" 100% \%d a\\%b"#);
        let binary = root.join("bin dir/back'up%");
        fs::create_dir_all(binary.parent().unwrap()).unwrap();
        fs::write(&binary, "#!/bin/sh\nprintf '%s\\0' \"$@\"\n").unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        let invocation = Invocation {
            binary,
            policy_paths: vec![root.join("p1 %s.yaml"), root.join("p2'$(id)'")],
            state_dir: root.join(r"st\ate%%"),
            log_dir: root.join("logs %' x"),
            crontab_file: None,
        };
        fs::create_dir_all(&invocation.log_dir).unwrap();
        let schedule = Schedule::parse("0 1 * * *", "UTC").unwrap();
        let line = Line {
            policy: "app-db",
            schedule: &schedule,
            label: "",
        };
        let block = render_block(&[line], &invocation, Tz::UTC, None, at(2026, 1, 1)).unwrap();
        let cron_line = block
            .lines()
            .find(|line| line.starts_with("0 1 * * * "))
            .unwrap();
        let command = as_cron_runs(cron_line.strip_prefix("0 1 * * * ").unwrap());
        let status = Command::new("sh").args(["-c", &command]).status().unwrap();
        assert!(status.success(), "{command}");
        let log = fs::read_to_string(invocation.log_dir.join("app-db.log")).unwrap();
        let arguments: Vec<&str> = log.split_terminator('\0').collect();
        let path = |path: &PathBuf| path.to_str().unwrap().to_owned();
        assert_eq!(
            arguments,
            [
                "--policies".to_owned(),
                path(&invocation.policy_paths[0]),
                "--policies".to_owned(),
                path(&invocation.policy_paths[1]),
                "--state-dir".to_owned(),
                path(&invocation.state_dir),
                "apply".to_owned(),
                "--policy".to_owned(),
                "app-db".to_owned(),
                "--auto-approve".to_owned(),
            ]
        );
    }

    /// Regression: escaping `%` inside the quotes (`'a\\%b'` for `a\%b`)
    /// leaves cron an unescaped `%`, because it pairs the text's backslash
    /// with the escape's; verified against Debian's cron 3.0pl1-162.
    #[test]
    fn a_percent_sign_after_a_backslash_is_escaped_outside_the_quotes() {
        assert_eq!(shell_word(r"a\%b"), r"'a\'\%'b'");
        assert_eq!(as_cron_runs(&shell_word(r"a\%b")), r"'a\'%'b'");
        assert_eq!(shell_word("100%"), r"'100'\%");
        assert_eq!(shell_word("%%"), r"\%\%");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn what_a_crontab_line_cannot_hold_is_refused() {
        let schedule = Schedule::parse("@daily", "UTC").unwrap();
        let line = [Line {
            policy: "app",
            schedule: &schedule,
            label: "",
        }];
        let render = |invocation: &Invocation, user: Option<&str>| {
            render_block(&line, invocation, Tz::UTC, user, at(2026, 1, 1))
                .unwrap_err()
                .to_string()
        };
        let mut relative = invocation(Path::new("/opt"));
        relative.state_dir = PathBuf::from("state");
        assert!(render(&relative, None).contains("not absolute"));
        let mut broken = invocation(Path::new("/opt"));
        broken.binary = PathBuf::from("/opt/a\nb");
        assert!(render(&broken, None).contains("line break"));
        assert!(render(&invocation(Path::new("/opt")), Some("two words")).contains("one word"));
    }

    // --- Finding and splicing the block --------------------------------------

    const BLOCK: &str = "# BEGIN backup managed block (written by `backup apply`; edits here are overwritten)\n0 1 * * * true\n# END backup managed block\n";
    const OTHER_BLOCK: &str = "# BEGIN backup managed block (written by `backup apply`; edits here are overwritten)\n# other\n30 2 * * * false\n# END backup managed block\n";

    #[test]
    fn splice_appends_replaces_and_removes() {
        assert_eq!(splice("", BLOCK).unwrap(), BLOCK);
        assert_eq!(splice("", "").unwrap(), "");
        assert_eq!(splice("a\n", BLOCK).unwrap(), format!("a\n{BLOCK}"));
        assert_eq!(splice("a", BLOCK).unwrap(), format!("a\n{BLOCK}"));
        let text = format!("# mine\nMAILTO=x\n{BLOCK}*/5 * * * * date +\\%s\n");
        assert_eq!(find_block(&text).unwrap(), Some(16..16 + BLOCK.len()));
        assert_eq!(
            splice(&text, OTHER_BLOCK).unwrap(),
            format!("# mine\nMAILTO=x\n{OTHER_BLOCK}*/5 * * * * date +\\%s\n")
        );
        assert_eq!(
            splice(&text, "").unwrap(),
            "# mine\nMAILTO=x\n*/5 * * * * date +\\%s\n"
        );
        // A block at the very end without its last newline.
        let unterminated = format!("a\n{}", BLOCK.trim_end());
        assert_eq!(splice(&unterminated, "").unwrap(), "a\n");
        assert_eq!(splice(&unterminated, BLOCK).unwrap(), format!("a\n{BLOCK}"));
    }

    #[test]
    fn malformed_markers_are_refused_with_their_lines() {
        let begin = format!("{BEGIN_MARKER}\n");
        let end = format!("{END_MARKER}\n");
        for (text, needle) in [
            (
                format!("a\n{end}{begin}{end}"),
                "line 2 ends a block that no line begins",
            ),
            (
                format!("a\n{begin}b\n"),
                "line 2 begins a block that no line ends",
            ),
            (
                format!("{begin}{end}{begin}{end}"),
                "line 3 begins a second block (the first begins on line 1)",
            ),
            (
                format!("{begin}{begin}{end}"),
                "line 2 begins a block while the one from line 1",
            ),
            // An edited marker is still a marker.
            (
                format!("{begin}  # END backup managed block (edited)\n{end}"),
                "line 3 ends a block",
            ),
        ] {
            let error = splice(&text, BLOCK).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
            assert!(error.contains("fix it by hand"), "{error}");
        }
    }

    /// A crontab line that is not a marker: anything printable, tabs, `%`.
    fn unmarked_line() -> impl Strategy<Value = String> {
        "[\\PC\t]{0,24}".prop_filter("not a marker", |line| {
            let line = line.trim();
            !line.starts_with(BEGIN_PREFIX) && !line.starts_with(END_PREFIX)
        })
    }

    fn unmarked_text() -> impl Strategy<Value = String> {
        (prop::collection::vec(unmarked_line(), 0..6), any::<bool>()).prop_map(
            |(lines, newline)| {
                let mut text = lines.join("\n");
                if newline && !text.is_empty() {
                    text.push('\n');
                }
                text
            },
        )
    }

    proptest! {
        #[test]
        fn splice_keeps_every_byte_outside_the_block(
            before in unmarked_text(),
            after in unmarked_text(),
            planned in prop::sample::select(vec![BLOCK, OTHER_BLOCK, ""]),
        ) {
            // Fresh: appended after the text, and removed again.
            let spliced = splice(&before, planned).unwrap();
            prop_assert_eq!(splice(&spliced, planned).unwrap(), spliced.clone());
            prop_assert!(spliced.starts_with(&before));
            let separated = if before.is_empty() || before.ends_with('\n') || planned.is_empty() {
                before.clone()
            } else {
                format!("{before}\n")
            };
            prop_assert_eq!(splice(&spliced, "").unwrap(), separated);
            // Existing: replaced in place, whatever surrounds it.
            let head = if before.is_empty() || before.ends_with('\n') { before.clone() } else { format!("{before}\n") };
            let text = format!("{head}{BLOCK}{after}");
            let replaced = splice(&text, planned).unwrap();
            prop_assert_eq!(&replaced, &format!("{head}{planned}{after}"));
            prop_assert_eq!(splice(&replaced, planned).unwrap(), replaced);
        }
    }

    #[test]
    fn diff_is_unified_with_current_and_planned_headers() {
        let current = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let planned = "a\nb\nc\nd\nE\nf\ng\nh\n";
        assert_eq!(
            diff(current, planned),
            "--- current\n+++ planned\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
        assert_eq!(diff(current, current), "");
    }

    // --- Time zones -----------------------------------------------------------

    #[test]
    fn the_same_clock_keeps_the_expression() {
        assert_eq!(
            fields("30 2 * * *", "Europe/Berlin", "Europe/Berlin"),
            ("30 2 * * *".to_owned(), None)
        );
        for (policy, host) in [
            ("UTC", "Etc/UTC"),
            ("Zulu", "GMT"),
            ("Etc/Universal", "Etc/GMT"),
            ("Europe/Paris", "Europe/Berlin"),
        ] {
            assert_eq!(
                fields("0  1 * * mon", policy, host),
                ("0 1 * * mon".to_owned(), None),
                "{policy} {host}"
            );
        }
        assert_eq!(
            fields("@weekly", "UTC", "Etc/UTC"),
            ("@weekly".to_owned(), None)
        );
        // cron reads `*/2` in a day field as `*`, then wants both days to match.
        assert_eq!(
            fields("0 1 */2 * mon", "UTC", "UTC"),
            (
                "0 1 * * *".to_owned(),
                Some("runs daily; apply decides what is due".to_owned())
            )
        );
    }

    #[test]
    fn crontab_file_names_cron_would_skip_are_named() {
        for skipped in ["/etc/cron.d/backup.cron", "/etc/cron.d/back up", "x~"] {
            assert!(file_name_warning(Path::new(skipped)).is_some(), "{skipped}");
        }
        for read in ["/etc/cron.d/backup", "/etc/cron.d/db_backup-2"] {
            assert_eq!(file_name_warning(Path::new(read)), None, "{read}");
        }
    }

    #[test]
    fn another_clock_runs_hourly_at_every_minute_a_tick_can_fall_on() {
        let hourly = Some("runs hourly; apply decides what is due".to_owned());
        let at_minutes = |minutes: &str| {
            Some(format!(
                "runs at minutes {minutes} of every hour; apply decides what is due"
            ))
        };
        assert_eq!(
            fields("0 1 * * *", "Europe/Berlin", "UTC"),
            ("0 * * * *".to_owned(), hourly.clone())
        );
        assert_eq!(
            fields("0 1 * * *", "Asia/Kolkata", "UTC"),
            ("30 * * * *".to_owned(), hourly.clone())
        );
        assert_eq!(
            fields("0 1 * * *", "UTC", "Asia/Kathmandu"),
            ("45 * * * *".to_owned(), hourly)
        );
        assert_eq!(
            fields("*/15 * * * *", "Asia/Kolkata", "UTC"),
            (
                "0,15,30,45 * * * *".to_owned(),
                at_minutes("0, 15, 30 and 45")
            )
        );
        // On spring-forward day 02:30 runs at 03:00 (01:00 UTC).
        assert_eq!(
            fields("30 2 * * *", "Europe/Berlin", "UTC"),
            ("0,30 * * * *".to_owned(), at_minutes("0 and 30"))
        );
        // Lord Howe moves its clock by 30 minutes.
        assert_eq!(
            fields("0 1 * * *", "Australia/Lord_Howe", "UTC"),
            ("0,30 * * * *".to_owned(), at_minutes("0 and 30"))
        );
        assert_eq!(
            fields("* * * * *", "Asia/Kolkata", "UTC"),
            (
                "* * * * *".to_owned(),
                Some("runs every minute; apply decides what is due".to_owned())
            )
        );
    }

    /// The guarantee: on the host's clock, cron fires at every tick of the
    /// policy's schedule over the next year (reading the line with the same
    /// DST rules cron has, which `Schedule` follows).
    #[test]
    fn every_tick_lands_on_a_minute_the_line_fires() {
        let zones = [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
        ];
        let now = at(2026, 1, 1);
        for policy_zone in zones {
            for host_zone in zones {
                let host: Tz = host_zone.parse().unwrap();
                for expression in [
                    "0 1 * * *",
                    "30 2 * * *",
                    "45 23 * * 0",
                    "@daily",
                    "5 4 1 * *",
                    "15 */6 * * *",
                ] {
                    let schedule = Schedule::parse(expression, policy_zone).unwrap();
                    let (fields, _) = host_fields(&schedule, host, now);
                    let line = Schedule::parse(&fields, host_zone).unwrap();
                    let mut tick = now;
                    while let Some(next) = schedule
                        .next_after(tick)
                        .filter(|next| *next < at(2027, 1, 1))
                    {
                        tick = next;
                        assert_eq!(
                            line.latest_at_or_before(tick),
                            Some(tick),
                            "{schedule:?} on a {host_zone} host as `{fields}`"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_host_time_zone_comes_from_tz_then_localtime_then_etc_timezone() {
        let link = Path::new("/usr/share/zoneinfo/Europe/Berlin");
        assert_eq!(
            timezone_from(Some("Asia/Tokyo"), Some(link), None),
            Tz::Asia__Tokyo
        );
        assert_eq!(
            timezone_from(Some(":Asia/Tokyo"), None, None),
            Tz::Asia__Tokyo
        );
        assert_eq!(
            timezone_from(Some("CET-1CEST,M3.5.0,M10.5.0/3"), Some(link), None),
            Tz::Europe__Berlin
        );
        assert_eq!(
            timezone_from(
                Some(""),
                Some(Path::new("../usr/share/zoneinfo/posix/Etc/UTC")),
                None
            ),
            Tz::Etc__UTC
        );
        assert_eq!(
            timezone_from(
                None,
                Some(Path::new("/etc/myzone")),
                Some("America/New_York\n")
            ),
            Tz::America__New_York
        );
        assert_eq!(timezone_from(None, None, Some("Nowhere/Land")), Tz::UTC);
    }

    #[test]
    fn a_header_that_crontab_printed_anyway_is_dropped() {
        let header = "# DO NOT EDIT THIS FILE - edit the master and reinstall.\n# (- installed on Wed Nov 25 03:56:50 2026)\n# (Cron version -- $Id: crontab.c,v 2.13 1994/01/17 03:20:37 vixie Exp $)\n";
        assert_eq!(strip_header(&format!("{header}# a\n")), "# a\n");
        assert_eq!(strip_header(header), "");
        // Only the whole header: a user's own lines stay.
        let own = "# DO NOT EDIT THIS FILE - edit the master and reinstall.\n# mine\n";
        assert_eq!(strip_header(own), own);
    }

    #[test]
    fn targets_describe_themselves() {
        assert_eq!(
            Target::File(PathBuf::from("/etc/cron.d/backup")).describe(),
            "/etc/cron.d/backup"
        );
        assert_eq!(
            Target::User(Some("postgres".to_owned())).describe(),
            "the crontab of user postgres"
        );
        assert!(Target::User(None).describe().starts_with("the "));
    }

    #[test]
    fn a_file_target_is_read_and_replaced_whole() {
        let folder = tempfile::tempdir().unwrap();
        let target = Target::File(folder.path().join("backup"));
        assert_eq!(read(&target).unwrap(), "");
        write(&target, "a\n").unwrap();
        write(&target, BLOCK).unwrap();
        assert_eq!(read(&target).unwrap(), BLOCK);
        let Target::File(path) = &target else {
            unreachable!()
        };
        assert_eq!(
            fs::metadata(path).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        assert_eq!(
            fs::read_dir(folder.path()).unwrap().count(),
            1,
            "a temporary file was left"
        );
        let missing = Target::File(folder.path().join("no/such/folder/backup"));
        assert!(
            write(&missing, "")
                .unwrap_err()
                .to_string()
                .contains("no/such/folder")
        );
    }
}
