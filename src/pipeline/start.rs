//! Before any row: the input copied when it can be read only once, the paths checked, the
//! checkpoint opened (or made) and bound to the input, and the report opened where the journal
//! says it ends.

use crate::checkpoint::{Binding, Checkpoint, Loaded, ReportStart};
use crate::input::spool::{self, Spool};
use crate::input::{self, InputError, Source};
use crate::job::Settings;
use crate::report::ReportWriter;
use crate::stop::Stop;

use super::{RunError, RunOptions};

/// What a run starts from.
pub(super) struct Opened {
    /// `None` for a dry run, which never touches the checkpoint.
    pub(super) journal: Option<Checkpoint>,
    pub(super) loaded: Loaded,
    pub(super) report: ReportWriter,
    /// Held for the whole run: a dry run's copy is removed when it is dropped.
    pub(super) _spool: Option<Spool>,
}

/// Open everything a run writes, refusing what SPEC section 6 refuses.
pub(super) async fn open(
    settings: &mut Settings,
    opts: &RunOptions,
    stop: &Stop,
) -> Result<Opened, RunError> {
    let mut spool = spool_input(settings, opts.dry_run, stop).await?;
    // Path safety (SPEC section 6): no symbolic links, no two roles on one file.
    settings.check_paths(opts.dry_run).map_err(|e| {
        io_err(
            "refusing to run job",
            &settings.job_path,
            std::io::Error::other(e),
        )
    })?;
    ensure_parent(&settings.report, "cannot create the report folder")?;
    if opts.dry_run {
        // A dry run touches neither the checkpoint nor the real report.
        let report = ReportWriter::create(&settings.report, settings.report_format)
            .map_err(|e| io_err("cannot write report", &settings.report, e))?;
        return Ok(Opened {
            journal: None,
            loaded: Loaded::default(),
            report,
            _spool: spool,
        });
    }
    let (mut journal, mut loaded) = open_checkpoint(settings, opts.fresh, spool.as_mut())?;
    if opts.retry_failed {
        let n = journal
            .forget_failed(&mut loaded)
            .map_err(|e| io_err("cannot write checkpoint", &settings.checkpoint, e))?;
        tracing::info!("--retry-failed: {n} failed rows will be attempted again");
    }
    let (report, start) = journal.open_report(&loaded, &settings.report, settings.report_format)?;
    log_start(settings, &loaded, start);
    Ok(Opened {
        journal: Some(journal),
        loaded,
        report,
        _spool: spool,
    })
}

fn log_start(settings: &Settings, loaded: &Loaded, start: ReportStart) {
    match start {
        ReportStart::Created => {}
        ReportStart::Continued { cut: 0 } => {
            tracing::info!("resuming: {} rows already recorded", loaded.rows_recorded());
        }
        ReportStart::Continued { cut } => tracing::info!(
            "resuming: {} rows already recorded; cut {cut} bytes of unrecorded rows from the report",
            loaded.rows_recorded()
        ),
        ReportStart::Rebuilt => {
            tracing::info!(
                "rebuilt the report {} from the checkpoint",
                settings.report.display()
            );
        }
    }
    let in_doubt = loaded.in_doubt().count();
    if in_doubt > 0 {
        tracing::info!(
            "{in_doubt} rows are in doubt (in flight when the last run stopped): settling them first"
        );
    }
}

/// Create the folder `path` goes in, if it has one.
pub(super) fn ensure_parent(path: &std::path::Path, what: &'static str) -> Result<(), RunError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| io_err(what, parent, e)),
        None => Ok(()),
    }
}

pub(super) fn io_err(
    what: &'static str,
    path: &std::path::Path,
    error: std::io::Error,
) -> RunError {
    RunError::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

/// Copy an input that can be read only once (stdin, a pipe, a FIFO) into a private spool file and
/// point the settings at the copy: the run, its checkpoint binding and every resume read only that
/// (SPEC section 3; [`input::spool`]). A real run's copy replaces the kept one only once the
/// checkpoint accepts it ([`open_checkpoint`]); a dry run's is removed when the run ends.
async fn spool_input(
    settings: &mut Settings,
    dry_run: bool,
    stop: &Stop,
) -> Result<Option<Spool>, RunError> {
    if !spool::needs_spool(&settings.input.source) {
        return Ok(None);
    }
    let place = if dry_run {
        spool::Place::DryRun(&settings.report)
    } else {
        spool::Place::Checkpoint(&settings.checkpoint)
    };
    let copy = spool::spool(&settings.input.source, place, stop).await?;
    settings.input.source = Source::File(copy.path().to_path_buf());
    Ok(Some(copy))
}

/// Open (or create) the checkpoint, bound to the job and the input's content: the spooled copy's
/// hash when the input was spooled, which then becomes the kept copy.
fn open_checkpoint(
    settings: &Settings,
    fresh: bool,
    spool: Option<&mut Spool>,
) -> Result<(Checkpoint, Loaded), RunError> {
    ensure_parent(&settings.checkpoint, "cannot create the checkpoint folder")?;
    let open_err = |path: &std::path::Path, error| InputError::Open {
        source_name: path.display().to_string(),
        error,
    };
    let (input_hash, input_len) = match (&spool, &settings.input.source) {
        (Some(copy), _) => (copy.hash, copy.len),
        (None, Source::File(path)) => {
            let len = std::fs::metadata(path)
                .map_err(|e| open_err(path, e))?
                .len();
            let hash = input::content_hash(path).map_err(|e| open_err(path, e))?;
            (hash, len)
        }
        // Not reached: `spool_input` copies stdin first. Bound to the job name only.
        (None, Source::Stdin) => (0, u64::from(u32::MAX)),
    };
    let binding = Binding {
        job: settings.name.clone(),
        input_hash,
        input_len,
    };
    let opened = if fresh {
        let (journal, loaded, archived) =
            Checkpoint::open_fresh(&settings.checkpoint, &binding, Some(&settings.report))?;
        for path in archived {
            tracing::info!("--fresh: kept the old file as {}", path.display());
        }
        (journal, loaded)
    } else {
        Checkpoint::open(&settings.checkpoint, &binding)?
    };
    // Accepted: this copy is the input from now on. (Refused, the copy is dropped, and removed.)
    if let Some(copy) = spool {
        copy.commit()
            .map_err(|e| io_err("cannot keep the input copy", copy.path(), e))?;
    }
    Ok(opened)
}
