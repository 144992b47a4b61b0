//! Lane independence: a vendor whose queue is full never holds up the reading for the others.
//!
//! The reader hands each row to its vendor's lane through a bounded queue
//! ([`LANE_QUEUE`](super::LANE_QUEUE) rows).
//! A queue fills when its vendor is slower than the reader: paused by a rate limit, slow to
//! answer, or simply given a lower rate. Waiting for room is right while every vendor is busy
//! (it keeps memory bounded); it is wrong when another vendor is running out of rows meanwhile.
//! So the reader ([`Dispatch::send`]) waits for room only while no other lane is starving (less
//! than half its queue left, and no backlog of its own to draw on) and the full lane keeps taking
//! rows (one at least every [`STALLED`]: rows for the others may lie further down the input).
//! Otherwise the full lane gets
//! a **backlog**: from then on the reader writes only that lane's row *line numbers* (8 bytes a
//! row) to an unlinked temporary file, and a thread of the lane's own ([`refill`]) reads the
//! input file again from the start, picking up exactly those lines and feeding them to the lane
//! as it takes them. Memory stays bounded (a queue per lane and one record at a time); the disk
//! takes 8 bytes a backlogged row; the cost is a second parse of the input for a backlogged
//! vendor, paid only by jobs where a vendor fell behind while another needed rows.
//!
//! Everything else is the reader's as before, decided once in input order: duplicates, rows
//! already recorded, `--limit`. A backlog holds only rows that passed them, so each input line
//! still gets exactly one report row. The second pass reads the same file: a pipe's input was
//! spooled before the run began, and the checkpoint's binding vouches the file is unchanged. A
//! row still in a backlog when the run stops is pending like a row still queued, and the
//! backlog's file vanishes with the run.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};

use crate::checkpoint::Loaded;
use crate::input;
use crate::job::Settings;
use crate::stop::Stop;

use super::consumer::Event;
use super::reader::{Work, classify_record, work_for};

/// A single lane's full queue is waited on until 1/this of it is free.
const ROOM_BATCH_DIVISOR: usize = 16;
/// How long the reader waits for room in a full queue before it looks at the other lanes again.
const ROOM_WAIT: Duration = Duration::from_millis(10);
/// A lane whose full queue has not taken one row in this long is stalled (paused by a rate
/// limit, or slower than a few rows a second): in a job with other vendors it gets a backlog
/// even before they run short, since rows for them may be further down the input.
const STALLED: Duration = Duration::from_millis(250);
/// How often a lane's refill thread looks at the stop flag while it waits for lines.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The run is stopping: nothing more is dispatched.
pub(super) struct Stopped;

/// The reader's side of the lanes: their queues, and a backlog for each lane that needed one.
pub(super) struct Dispatch {
    lanes: Vec<mpsc::Sender<Work>>,
    backlogs: Vec<Option<Arc<Backlog>>>,
    /// Rows handed to each lane so far (a lane that never had one is not starving).
    sent: Vec<u64>,
    ctx: Arc<Refill>,
    runtime: tokio::runtime::Handle,
}

/// What a lane's refill thread needs.
pub(super) struct Refill {
    pub(super) settings: Arc<Settings>,
    pub(super) loaded: Arc<Loaded>,
    pub(super) stop: Stop,
    pub(super) events: mpsc::Sender<Event>,
}

impl Dispatch {
    pub(super) fn new(lanes: Vec<mpsc::Sender<Work>>, ctx: Refill) -> Dispatch {
        let n = lanes.len();
        Dispatch {
            lanes,
            backlogs: vec![None; n],
            sent: vec![0; n],
            ctx: Arc::new(ctx),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Hand `work` to lane `lane`: into its queue, waiting for room while no other lane
    /// starves, else into the lane's backlog. `Err` when the run is stopping.
    pub(super) fn send(&mut self, lane: usize, mut work: Work) -> Result<(), Stopped> {
        if let Some(backlog) = &self.backlogs[lane] {
            return backlog.push(work.line, &self.ctx);
        }
        if self.lanes.len() == 1 {
            // One vendor: nobody to hold up, waiting for room is all there is. A full queue is
            // waited on until a batch of rows fits (the slots are only waited for, and handed
            // back at once): waiting for one slot at a time woke this thread for every row the
            // lane took, a futex wake and a context switch a row.
            let tx = &self.lanes[0];
            return match tx.try_send(work) {
                Ok(()) => Ok(()),
                Err(TrySendError::Closed(_)) => Err(Stopped),
                Err(TrySendError::Full(work)) => {
                    let batch = (tx.max_capacity() / ROOM_BATCH_DIVISOR).max(1);
                    match self.runtime.block_on(tx.reserve_many(batch)) {
                        Ok(permits) => drop(permits),
                        Err(_) => return Err(Stopped),
                    }
                    tx.blocking_send(work).map_err(|_| Stopped)
                }
            };
        }
        let waiting = std::time::Instant::now();
        loop {
            match self.lanes[lane].try_send(work) {
                Ok(()) => break,
                Err(TrySendError::Closed(_)) => return Err(Stopped),
                Err(TrySendError::Full(w)) => work = w,
            }
            let stalled = self.lanes.len() > 1 && waiting.elapsed() >= STALLED;
            if stalled || self.others_starving(lane) {
                let line = work.line;
                return self.start_backlog(lane)?.push(line, &self.ctx);
            }
            let tx = &self.lanes[lane];
            match self.runtime.block_on(tx.send_timeout(work, ROOM_WAIT)) {
                Ok(()) => break,
                Err(SendTimeoutError::Closed(_)) => return Err(Stopped),
                Err(SendTimeoutError::Timeout(w)) => work = w,
            }
            if self.ctx.stop.is_set() {
                return Err(Stopped);
            }
        }
        self.sent[lane] += 1;
        Ok(())
    }

    /// Whether a lane other than `full` has rows coming but fewer than half a queue of them.
    fn others_starving(&self, full: usize) -> bool {
        (0..self.lanes.len()).filter(|&j| j != full).any(|j| {
            let queued = self.lanes[j].max_capacity() - self.lanes[j].capacity();
            let low = queued < self.lanes[j].max_capacity() / 2;
            match &self.backlogs[j] {
                Some(b) => low && b.unread() < (self.lanes[j].max_capacity() / 2) as u64,
                None => low && self.sent[j] > 0,
            }
        })
    }

    /// Give lane `lane` a backlog and start the thread that feeds the lane from it.
    fn start_backlog(&mut self, lane: usize) -> Result<Arc<Backlog>, Stopped> {
        let (backlog, reader) = match Backlog::create() {
            Ok(b) => b,
            Err(e) => {
                let what = format!("cannot create a backlog file for a vendor's rows: {e}");
                let _ = self.ctx.events.blocking_send(Event::Internal(what));
                self.ctx.stop.trigger();
                return Err(Stopped);
            }
        };
        let backlog = Arc::new(backlog);
        tracing::debug!(
            vendor = %self.ctx.settings.vendors[lane].name,
            "the vendor's queue is full while another vendor needs rows: its rows now wait in a backlog"
        );
        self.backlogs[lane] = Some(backlog.clone());
        let (ctx, tx, feed) = (self.ctx.clone(), self.lanes[lane].clone(), backlog.clone());
        let thread = self
            .runtime
            .spawn_blocking(move || refill(&ctx, &feed, reader, &tx));
        let (events, stop) = (self.ctx.events.clone(), self.ctx.stop.clone());
        self.runtime.spawn(async move {
            if let Err(e) = thread.await {
                stop.trigger();
                let what = format!(
                    "a vendor's backlog reader failed: {}",
                    super::row::join_error_text(e)
                );
                let _ = events.send(Event::Internal(what)).await;
            }
        });
        Ok(backlog)
    }
}

impl Drop for Dispatch {
    /// The reader is done (or stopping): no more lines for any backlog.
    fn drop(&mut self) {
        for b in self.backlogs.iter().flatten() {
            b.close();
        }
    }
}

/// One lane's backlog: line numbers in input order, written by the reader, read by the lane's
/// refill thread.
pub(super) struct Backlog {
    state: Mutex<Written>,
    more: Condvar,
    /// Lines the refill thread has taken.
    taken: AtomicU64,
}

struct Written {
    file: BufWriter<File>,
    /// Lines pushed.
    lines: u64,
    /// Lines flushed to the file, readable by the refill thread.
    flushed: u64,
    /// No more lines will come.
    closed: bool,
    /// A write failed: the reader stops the run.
    failed: bool,
}

/// What the refill thread gets next.
enum Next {
    Line(u64),
    End,
    Stopped,
}

impl Backlog {
    /// A backlog in a fresh temporary file, removed from its folder at once (its two handles
    /// keep it until the run ends); the handle to read it with.
    fn create() -> std::io::Result<(Backlog, BufReader<File>)> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("unlinker-backlog-{}-{nanos}", std::process::id()));
        let write = File::options().write(true).create_new(true).open(&path)?;
        let read = File::open(&path);
        let _ = std::fs::remove_file(&path);
        let backlog = Backlog {
            state: Mutex::new(Written {
                file: BufWriter::new(write),
                lines: 0,
                flushed: 0,
                closed: false,
                failed: false,
            }),
            more: Condvar::new(),
            taken: AtomicU64::new(0),
        };
        Ok((backlog, BufReader::new(read?)))
    }

    fn lock(&self) -> MutexGuard<'_, Written> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, line: u64, ctx: &Refill) -> Result<(), Stopped> {
        let mut w = self.lock();
        if let Err(e) = w.file.write_all(&line.to_le_bytes()) {
            w.failed = true;
            drop(w);
            self.more.notify_all();
            let what = format!("cannot write a vendor's backlog file: {e}");
            let _ = ctx.events.blocking_send(Event::Internal(what));
            ctx.stop.trigger();
            return Err(Stopped);
        }
        w.lines += 1;
        drop(w);
        self.more.notify_one();
        Ok(())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.more.notify_all();
    }

    /// Every line the reader will push has been taken.
    fn drained(&self) -> bool {
        let w = self.lock();
        w.closed && w.lines == self.taken.load(Ordering::Relaxed)
    }

    /// Lines pushed and not taken yet.
    fn unread(&self) -> u64 {
        self.lock().lines - self.taken.load(Ordering::Relaxed)
    }

    /// The next line to feed, waiting for the reader to push one.
    fn next(&self, reader: &mut BufReader<File>, stop: &Stop) -> Next {
        let taken = self.taken.load(Ordering::Relaxed);
        let mut w = self.lock();
        loop {
            if stop.is_set() || w.failed {
                return Next::Stopped;
            }
            if w.flushed == taken && w.lines > taken {
                if w.file.flush().is_err() {
                    return Next::Stopped;
                }
                w.flushed = w.lines;
            }
            if w.flushed > taken {
                break;
            }
            if w.closed {
                return Next::End;
            }
            w = self
                .more
                .wait_timeout(w, STOP_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(w);
        let mut bytes = [0u8; 8];
        if reader.read_exact(&mut bytes).is_err() {
            return Next::Stopped;
        }
        self.taken.store(taken + 1, Ordering::Relaxed);
        Next::Line(u64::from_le_bytes(bytes))
    }
}

/// A lane's refill thread: read the input again, and feed the lane the rows its backlog names,
/// in order, as the lane takes them.
fn refill(ctx: &Refill, backlog: &Backlog, mut lines: BufReader<File>, lane: &mpsc::Sender<Work>) {
    let pending = |line: u64| {
        // Not complete: the row stays pending (like a row still queued when the run stops).
        let event = Event::Pending {
            line,
            sent: false,
            in_doubt: false,
        };
        let _ = ctx.events.blocking_send(event);
    };
    let internal = |what: String| {
        ctx.stop.trigger();
        let _ = ctx.events.blocking_send(Event::Internal(what));
    };
    let mut records = match input::open(&ctx.settings.input) {
        Ok(r) => r,
        Err(e) => {
            let _ = ctx.events.blocking_send(Event::Fatal(e));
            return;
        }
    };
    loop {
        let want = match backlog.next(&mut lines, &ctx.stop) {
            Next::Line(line) => line,
            Next::End => return,
            Next::Stopped if backlog.drained() => return,
            Next::Stopped => return pending(0),
        };
        let record = loop {
            match records.next() {
                Some(Ok(r)) if r.line < want => continue,
                Some(Ok(r)) => break r,
                Some(Err(e)) => {
                    let _ = ctx.events.blocking_send(Event::Fatal(e));
                    return;
                }
                None => {
                    return internal(format!(
                        "a vendor's backlog names line {want}, past the input's end"
                    ));
                }
            }
        };
        if record.line != want {
            return internal(format!(
                "a vendor's backlog names line {want}, which starts no record on the second reading"
            ));
        }
        let settings = &ctx.settings;
        let Ok((_, row)) = classify_record(settings, record.fields) else {
            return internal(format!(
                "line {want} read differently the second time (the input changed during the run?)"
            ));
        };
        let work = work_for(settings, &ctx.loaded, want, row, record.reference);
        if lane.blocking_send(work).is_err() {
            return pending(want);
        }
    }
}
