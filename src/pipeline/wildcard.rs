//! Wildcard rows (SPEC section 3): a row that names a user and asks for every link of one
//! provider, or every link at all, with `*` in its link fields.
//!
//! Such a row is never sent as it stands. Its vendor's read lists the user's matching links
//! ([`Adapter::classify_list`](crate::adapter::Adapter::classify_list)), then each link is
//! removed as an ordinary row of its own ([`drive_row`]), one after another, through the same
//! limiter, retries and read-back of lost answers. Every call's `intent` record names its link,
//! and a `link` record follows each finished link, so a crash between two links resumes after
//! the links already finished: the resume lists the user's links again, skips the finished ones,
//! and settles the link whose call was in flight by that list (no longer listed: the interrupted
//! call removed it; still listed: it is sent again). A link whose first step succeeded but whose
//! later step (Auth0 `delete_unlinked_user`) had not, no longer listed, goes on at that step.
//!
//! The row still ends with one outcome: `unlinked` when it removed at least one link and none
//! failed, `absent` when nothing matched (or every match was already gone), `failed` when any
//! removal failed; the message lists the links either way.
//!
//! Bounds: a row has as many links as the vendor's read lists, and that answer is read to 1 MiB
//! at most (a larger one halts the vendor as unexpected), so a few thousand links at the very
//! most; the journal keeps one `link` record per finished link and memory holds only the row
//! being worked on. A listed link whose id is longer than [`MAX_LINK_FIELD`] bytes is `failed`
//! rather than sent (it could not have come from a valid input row either). The message lists
//! links up to the report's 1,000 characters, then says how many more there are; the journal's
//! `link` records list every one.

use crate::adapter::{Class, Params, Prepared, VendorDoc};
use crate::checkpoint::{LinkAt, LinkDone};
use crate::client::{Answered, CallKind, CallLog, Stopped};
use crate::report::{MAX_MESSAGE_CHARS, Outcome};

use super::consumer::Event;
use super::reader::Work;
use super::row::{End, LaneCtx, Tagged, drive_row, join};

/// The longest field value a listed link may have (the input's own field limit).
pub(super) const MAX_LINK_FIELD: usize = 1024;

/// Remove every link the row matches. Returns how the row ended and how many links this run
/// removed.
pub(super) async fn drive(lane: &LaneCtx, work: &Work, log: &mut CallLog) -> (End, u64) {
    let progress = work.links.clone().unwrap_or_default();
    let mut done = progress.done;
    let mut removed_now = 0;
    let doc = lane.client.vendor.kind.doc();
    let mut in_doubt_first = None;
    match &progress.current {
        // The link's first step succeeded: the list no longer shows it; finish it first.
        Some(at) if at.steps_done > 0 => {
            let Some(link) = rebuild(doc, at) else {
                let message = format!(
                    "the checkpoint names link `{}` with fields this vendor does not have",
                    at.key
                );
                return (End::Done(Outcome::Failed, message), 0);
            };
            let sub = link_work(work, link.clone(), at.steps_done, at.in_doubt);
            log.in_doubt = at.in_doubt.is_some();
            match remove_link(lane, &sub, log, &work.row, &mut done).await {
                Some(removed) => removed_now += removed,
                None => return (End::Pending, removed_now),
            }
        }
        // In doubt at its first step that changes anything (the steps before it only read).
        Some(at) if at.in_doubt.is_some() => in_doubt_first = Some(at.key.clone()),
        _ => {}
    }

    let links = match list(lane, work, log).await {
        Err(Stopped) => return (End::Pending, removed_now),
        Ok(Listing::Links(links)) => links,
        Ok(Listing::End(outcome, m)) if done.is_empty() => {
            log.in_doubt = false;
            return (End::Done(outcome, m), removed_now);
        }
        // The user went away after some of its links were handled: say what was done.
        Ok(Listing::End(_, m)) => {
            log.in_doubt = false;
            let (outcome, message) = conclude(&done);
            return (End::Done(outcome, join(&message, &m)), removed_now);
        }
    };
    log.in_doubt = false;
    let mut note = String::new();
    if let Some(key) = &in_doubt_first {
        if links.iter().any(|l| &l.key.0 == key) {
            note = "a link was in doubt after an interruption; the list still holds it, so it was sent again".into();
        } else {
            let label = label_of(&work.row, key).to_string();
            let message = "in doubt after an interruption; the list no longer holds it, so the interrupted call removed it".to_string();
            finish_link(
                lane,
                work.line,
                &mut done,
                label,
                Outcome::Unlinked,
                message,
            )
            .await;
            removed_now += 1;
        }
    }
    for link in links {
        let label = label_of(&work.row, &link.key.0).to_string();
        if done.iter().any(|d| d.label == label) {
            continue;
        }
        if let Some((name, _)) = link.params.pairs().find(|(_, v)| v.len() > MAX_LINK_FIELD) {
            let message = format!(
                "not removed: the vendor listed a `{name}` longer than {MAX_LINK_FIELD} bytes"
            );
            finish_link(lane, work.line, &mut done, label, Outcome::Failed, message).await;
            continue;
        }
        if lane.stop.is_set() {
            return (End::Pending, removed_now);
        }
        let sub = link_work(work, link, 0, None);
        match remove_link(lane, &sub, log, &work.row, &mut done).await {
            Some(removed) => removed_now += removed,
            None => return (End::Pending, removed_now),
        }
    }
    let (outcome, message) = conclude(&done);
    (End::Done(outcome, join(&note, &message)), removed_now)
}

/// `--dry-run --check` of a wildcard row: list its links and say which a real run would remove.
/// Returns how the row ended and how many links a real run would remove.
pub(super) async fn check(lane: &LaneCtx, work: &Work, log: &mut CallLog) -> (End, u64) {
    let links = match list(lane, work, log).await {
        Err(Stopped) => return (End::Pending, 0),
        Ok(Listing::End(outcome, m)) => return (End::Done(outcome, m), 0),
        Ok(Listing::Links(links)) => links,
    };
    if links.is_empty() {
        return (End::Done(Outcome::Absent, nothing_matched()), 0);
    }
    let adapter = &lane.client.vendor.adapter;
    let secrets = lane.client.secrets();
    let would_send: Vec<String> = links
        .iter()
        .map(|l| secrets.scrub(&adapter.build(l, 0, None).describe()))
        .collect();
    log.show_only(would_send.join(" ; "));
    let labels: Vec<&str> = links
        .iter()
        .map(|l| label_of(&work.row, &l.key.0))
        .collect();
    let message = format!("would remove {}", listing(&labels));
    (End::Done(Outcome::DryRun, message), links.len() as u64)
}

/// What a wildcard row's read came to.
enum Listing {
    /// The matching links (possibly none).
    Links(Vec<Prepared>),
    /// The row ends without removals: the user does not exist (`absent`), or the read failed.
    End(Outcome, String),
}

async fn list(lane: &LaneCtx, work: &Work, log: &mut CallLog) -> Result<Listing, Stopped> {
    let rec = Tagged {
        sink: &lane.sink,
        link: None,
    };
    let mut budget = 0;
    let kind = CallKind::List;
    let answered = lane
        .client
        .call(&rec, work.line, &work.row, log, kind, &mut budget)
        .await?;
    let class = match answered {
        Answered::Verdict(v) => v.class,
        Answered::Lost(m) => Class::Failed(m),
    };
    Ok(match class {
        Class::Listed(links) => Listing::Links(links),
        Class::Absent(m) => Listing::End(Outcome::Absent, m),
        Class::Failed(m) => Listing::End(
            Outcome::Failed,
            format!("listing the user's links failed: {m}"),
        ),
        // The client resolves every other class itself.
        other => Listing::End(
            Outcome::Failed,
            format!(
                "listing the user's links: unexpected answer class {}",
                other.name()
            ),
        ),
    })
}

/// Remove one link as a row of its own and record how it ended. `None` when the run stops
/// first (the row stays pending); else how many links this removed (0 or 1).
async fn remove_link(
    lane: &LaneCtx,
    sub: &Work,
    log: &mut CallLog,
    row: &Prepared,
    done: &mut Vec<LinkDone>,
) -> Option<u64> {
    log.lost_answer = false;
    log.absent_after_lost = false;
    log.retried_answer = None;
    let label = label_of(row, &sub.row.key.0).to_string();
    let (outcome, message) = match drive_row(lane, sub, log, Some(&sub.row)).await {
        End::Pending => return None,
        // Gone after a lost answer: this run most likely removed it.
        End::Done(Outcome::Absent, m) if log.absent_after_lost => (Outcome::Unlinked, m),
        End::Done(outcome, m) => (outcome, m),
    };
    let removed = u64::from(outcome == Outcome::Unlinked);
    finish_link(lane, sub.line, done, label, outcome, message).await;
    Some(removed)
}

async fn finish_link(
    lane: &LaneCtx,
    line: u64,
    done: &mut Vec<LinkDone>,
    label: String,
    outcome: Outcome,
    message: String,
) {
    let message = lane.client.secrets().scrub(&message);
    let event = Event::LinkDone {
        line,
        label: label.clone(),
        outcome,
        message: message.clone(),
    };
    lane.sink.send(event).await;
    done.push(LinkDone {
        label,
        outcome,
        message,
    });
}

/// A link of the row, as a row of its own.
fn link_work(work: &Work, link: Prepared, start_step: u8, in_doubt: Option<u8>) -> Work {
    Work {
        line: work.line,
        row: link,
        start_step,
        in_doubt,
        reference: String::new(),
        failed_before: None,
        links: None,
    }
}

/// The link a checkpoint names, rebuilt with the vendor's own field names.
fn rebuild(doc: &VendorDoc, at: &LinkAt) -> Option<Prepared> {
    let mut params = Params::new();
    for (name, value) in &at.params {
        let field = doc.fields.iter().find(|f| f.name == name)?;
        params.set(field.name, value.as_str());
    }
    Some(Prepared {
        key: crate::adapter::Key(at.key.clone()),
        params,
    })
}

/// A link's label in messages: its key without the user it belongs to (the row names it).
fn label_of<'a>(row: &Prepared, link_key: &'a str) -> &'a str {
    match (row.key.0.split_once('/'), link_key.split_once('/')) {
        (Some((owner, _)), Some((link_owner, rest))) if owner == link_owner => rest,
        _ => link_key,
    }
}

fn nothing_matched() -> String {
    "no link matched: the user has no such link".into()
}

/// The row's outcome and message from its finished links.
fn conclude(done: &[LinkDone]) -> (Outcome, String) {
    let of = |o: Outcome| -> Vec<&LinkDone> { done.iter().filter(|d| d.outcome == o).collect() };
    let removed = of(Outcome::Unlinked);
    let failed = of(Outcome::Failed);
    let gone = of(Outcome::Absent);
    let labels = |ds: &[&LinkDone]| -> Vec<String> { ds.iter().map(|d| d.label.clone()).collect() };
    let mut parts = Vec::new();
    if !removed.is_empty() {
        parts.push(format!("removed {}", listing(&labels(&removed))));
    }
    if !failed.is_empty() {
        let described: Vec<String> = failed
            .iter()
            .map(|d| format!("{} ({})", d.label, d.message))
            .collect();
        parts.push(format!("failed {}", listing(&described)));
    }
    if !gone.is_empty() {
        parts.push(format!("already gone {}", listing(&labels(&gone))));
    }
    let outcome = if !failed.is_empty() {
        Outcome::Failed
    } else if !removed.is_empty() {
        Outcome::Unlinked
    } else {
        Outcome::Absent
    };
    if parts.is_empty() {
        return (outcome, nothing_matched());
    }
    (outcome, parts.join("; "))
}

/// `N: a, b, c`, cut to fit the report's message with how many more were left out.
fn listing<S: AsRef<str>>(items: &[S]) -> String {
    let budget = MAX_MESSAGE_CHARS / 2;
    let mut out = format!("{}:", items.len());
    for (i, item) in items.iter().enumerate() {
        let item = item.as_ref();
        if out.chars().count() + item.chars().count() > budget && i > 0 {
            out.push_str(&format!(" … and {} more", items.len() - i));
            return out;
        }
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(label: &str, outcome: Outcome, message: &str) -> LinkDone {
        LinkDone {
            label: label.into(),
            outcome,
            message: message.into(),
        }
    }

    #[test]
    fn one_outcome_from_every_link() {
        let (o, m) = conclude(&[]);
        assert_eq!(o, Outcome::Absent);
        assert!(m.contains("no link matched"), "{m}");
        let two = [
            done("facebook/123", Outcome::Unlinked, ""),
            done("facebook/456", Outcome::Unlinked, ""),
        ];
        assert_eq!(
            conclude(&two),
            (
                Outcome::Unlinked,
                "removed 2: facebook/123, facebook/456".into()
            )
        );
        let mixed = [
            done("a/1", Outcome::Unlinked, ""),
            done("a/2", Outcome::Failed, "HTTP 400: bad"),
            done("a/3", Outcome::Absent, "gone"),
        ];
        let (o, m) = conclude(&mixed);
        assert_eq!(o, Outcome::Failed);
        assert_eq!(
            m,
            "removed 1: a/1; failed 1: a/2 (HTTP 400: bad); already gone 1: a/3"
        );
        let (o, _) = conclude(&[done("a/3", Outcome::Absent, "")]);
        assert_eq!(o, Outcome::Absent);
    }

    #[test]
    fn long_listings_say_how_many_were_left_out() {
        let items: Vec<String> = (0..100).map(|i| format!("provider/{i:020}")).collect();
        let text = listing(&items);
        assert!(text.starts_with("100: provider/"), "{text}");
        assert!(text.ends_with("more"), "{text}");
        assert!(text.chars().count() <= MAX_MESSAGE_CHARS / 2 + 40, "{text}");
    }

    #[test]
    fn labels_drop_the_user() {
        let row = Prepared {
            key: crate::adapter::Key("auth0|u1/*/*".into()),
            params: Params::new(),
        };
        assert_eq!(label_of(&row, "auth0|u1/facebook/123"), "facebook/123");
        assert_eq!(label_of(&row, "other/facebook/123"), "other/facebook/123");
    }
}
