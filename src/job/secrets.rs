//! Values that must never appear in any output, in any encoding the product applies.
//!
//! A vendor that echoes a request back in an error puts a credential into the row's message in
//! the encoding the request used: percent-encoded in a form body or URL, JSON-escaped in a JSON
//! answer, base64 in an `Authorization` header. So each secret is searched for in every form the
//! product (or its HTTP stack) could have given it (SPEC section 8):
//!
//! - raw;
//! - percent-encoded as `adapter::wire::encode` does (RFC 3986 unreserved kept, `%XX` upper-case;
//!   the lower-case `%xx` spelling too, since some servers echo it normalised);
//! - `application/x-www-form-urlencoded` as `reqwest`/`url` write it (`+` for space);
//! - JSON-escaped as `serde_json` writes it inside a string;
//! - base64, standard and URL-safe, with and without padding. No adapter builds Basic auth
//!   (`user:secret`) today, so it is base64 of the secret alone; and since a secret can sit at
//!   any offset of a longer encoded text, also the part of its base64 that does not depend on
//!   its neighbours, at each of the three byte alignments.
//!
//! All forms are compiled once, at load, into one Aho-Corasick automaton (leftmost-longest, so a
//! whole padded form wins over its core). `scrub` runs on every row's request and message: a text
//! holding no secret costs one prefiltered scan and one copy (the `scrub_speed` test measures
//! it).

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::adapter::wire::{REDACTED, encode};

/// Secrets shorter than this are not scrubbed from free text: replacing every "1" or "ab" in a
/// message would destroy it while protecting nothing. Also the shortest encoded form searched.
const MIN_SCRUB_LEN: usize = 4;

/// Most values [`Secrets::learn`] keeps: a fetched token is replaced about hourly, so only the
/// latest few can still turn up in an answer.
const MAX_LEARNED: usize = 8;

/// The secrets of a job, compiled for scrubbing.
#[derive(Clone, Default)]
pub struct Secrets {
    count: usize,
    forms: usize,
    finder: Option<AhoCorasick>,
    /// Secrets met during the run (fetched access tokens), with all their forms, longest
    /// first; shared by every clone, so the runner's copy and the report's see the same.
    learned: std::sync::Arc<std::sync::RwLock<Vec<Vec<String>>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        write!(f, "Secrets({} values, {} forms)", self.count, self.forms)
    }
}

impl Secrets {
    /// Compile `values` (duplicates and values shorter than 4 bytes are dropped).
    pub fn new<I, S>(values: I) -> Secrets
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut raw: Vec<String> = values
            .into_iter()
            .map(|v| v.as_ref().to_string())
            .filter(|v| v.len() >= MIN_SCRUB_LEN)
            .collect();
        raw.sort();
        raw.dedup();
        let mut forms: Vec<String> = raw.iter().flat_map(|s| forms_of(s)).collect();
        forms.retain(|f| f.len() >= MIN_SCRUB_LEN);
        forms.sort();
        forms.dedup();
        let finder = (!forms.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&forms)
                .expect("a few short literal patterns always compile")
        });
        Secrets {
            count: raw.len(),
            forms: forms.len(),
            finder,
            learned: Default::default(),
        }
    }

    /// Remember a secret obtained while running (a fetched access token): scrubbed from now on
    /// in every form, like the job's own.
    pub fn learn(&self, secret: &str) {
        if secret.len() < MIN_SCRUB_LEN {
            return;
        }
        let mut forms: Vec<String> = forms_of(secret)
            .into_iter()
            .filter(|f| f.len() >= MIN_SCRUB_LEN)
            .collect();
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        if learned.iter().any(|known| known.first() == forms.first()) {
            return;
        }
        if learned.len() >= MAX_LEARNED {
            learned.remove(0);
        }
        learned.push(forms);
    }

    /// `text` with every form of every secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        // Learned values first: one may hold a job secret (a signed assertion holds the key's
        // id), and scrubbing that part first would leave the rest of it in the clear.
        let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
        if learned.is_empty() {
            return self.scrub_job(text);
        }
        let mut text = text.to_string();
        for form in learned.iter().flatten() {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), REDACTED);
            }
        }
        drop(learned);
        self.scrub_job(&text)
    }

    /// [`Secrets::scrub`] for the job's own secrets.
    fn scrub_job(&self, text: &str) -> String {
        match &self.finder {
            Some(finder) if finder.is_match(text) => {
                let mut out = String::with_capacity(text.len());
                finder.replace_all_with(text, &mut out, |_, _, dst| {
                    dst.push_str(REDACTED);
                    true
                });
                out
            }
            _ => text.to_string(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Every encoded form of `secret` searched for.
fn forms_of(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    let percent = encode(secret);
    forms.push(lower_hex(&percent));
    forms.push(percent);
    forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    let json = serde_json::to_string(secret).expect("a string always serializes");
    let escaped = json[1..json.len() - 1].to_string();
    // Escaped twice too: a vendor that quotes our JSON inside its own JSON error message.
    let twice = serde_json::to_string(&escaped).expect("a string always serializes");
    forms.push(twice[1..twice.len() - 1].to_string());
    forms.push(escaped);
    let bytes = secret.as_bytes();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(bytes));
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for offset in 0..3 {
            forms.push(base64_core(engine, bytes, offset));
        }
    }
    forms
}

/// `%2F` → `%2f`, leaving everything else alone.
fn lower_hex(percent: &str) -> String {
    let mut out = String::with_capacity(percent.len());
    let mut hex_left = 0;
    for c in percent.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The base64 characters that `bytes` alone decide when they start `offset` bytes into a
/// 3-byte group of a longer encoded text: the characters whose 6 bits all lie inside `bytes`.
fn base64_core(engine: &impl base64::Engine, bytes: &[u8], offset: usize) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(bytes);
    let text = engine.encode(&padded);
    let start = (8 * offset).div_ceil(6);
    let end = (8 * padded.len()) / 6;
    text.get(start..end).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr/t+ké \"y\"=\\~*";

    fn secrets() -> Secrets {
        Secrets::new([SECRET, "ab", "plain-token-1234"])
    }

    fn assert_scrubbed(encoded: &str) {
        let text = format!("vendor said: <{encoded}> end");
        let out = secrets().scrub(&text);
        assert!(
            out.contains(REDACTED) && !out.contains(encoded),
            "{encoded:?} survived: {out:?}"
        );
        assert!(
            out.starts_with("vendor said: <") && out.ends_with("> end"),
            "{out}"
        );
    }

    #[test]
    fn learned_secrets_are_scrubbed_in_every_clone_and_form() {
        let job = Secrets::new(["job-secret-1"]);
        let copy = job.clone();
        assert_eq!(copy.scrub("a ya29.token/x+y b"), "a ya29.token/x+y b");
        job.learn("ya29.token/x+y");
        job.learn("ab");
        assert_eq!(copy.scrub("a ya29.token/x+y b"), "a [redacted] b");
        assert_eq!(copy.scrub("ya29.token%2Fx%2By"), "[redacted]");
        assert_eq!(copy.scrub("job-secret-1 ab"), "[redacted] ab");
        // A learned value that holds a job secret is scrubbed whole.
        job.learn("head.job-secret-1.tail");
        assert_eq!(copy.scrub("x head.job-secret-1.tail y"), "x [redacted] y");
        for n in 0..MAX_LEARNED {
            job.learn(&format!("later-token-{n}"));
        }
        assert_eq!(copy.scrub("later-token-0"), "[redacted]");
    }

    #[test]
    fn raw_and_short_values() {
        assert_scrubbed(SECRET);
        assert_scrubbed("plain-token-1234");
        assert_eq!(secrets().scrub("ab cd"), "ab cd", "too short to scrub");
        assert_eq!(
            secrets().scrub("x plain-token-1234plain-token-1234 y"),
            "x [redacted][redacted] y"
        );
        assert!(Secrets::default().is_empty());
        assert_eq!(Secrets::default().scrub("same"), "same");
    }

    #[test]
    fn percent_and_form_encoded() {
        let rfc = encode(SECRET);
        assert!(rfc.contains("%2F") && rfc.contains("%20"), "{rfc}");
        assert_scrubbed(&rfc);
        assert_scrubbed(&lower_hex(&rfc));
        assert!(lower_hex(&rfc).contains("%2f"));
        let form: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
        assert!(form.contains('+'), "{form}");
        assert_scrubbed(&form);
        // A whole form body, as a vendor echoing it would show it.
        let body = format!("apiKey=k&secret={rfc}&UID=u");
        assert_eq!(
            secrets().scrub(&body),
            format!("apiKey=k&secret={REDACTED}&UID=u")
        );
    }

    #[test]
    fn json_escaped() {
        let json = serde_json::to_string(SECRET).unwrap();
        let inner = &json[1..json.len() - 1];
        assert!(inner.contains("\\\"") && inner.contains("\\\\"), "{inner}");
        assert_scrubbed(inner);
        let echoed = serde_json::json!({ "error": format!("bad secret {SECRET}") }).to_string();
        assert!(!secrets().scrub(&echoed).contains(inner));
    }

    #[test]
    fn base64_every_alphabet_padding_and_alignment() {
        let b = SECRET.as_bytes();
        for encoded in [
            STANDARD.encode(b),
            STANDARD_NO_PAD.encode(b),
            URL_SAFE.encode(b),
            URL_SAFE_NO_PAD.encode(b),
        ] {
            assert_scrubbed(&encoded);
        }
        // Inside a longer base64 text, at every alignment: `Basic base64(id:secret)` and the like.
        for prefix in ["", "i", "id", "id:", "user:"] {
            for engine in [&STANDARD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                let blob = engine.encode(format!("{prefix}{SECRET}@tail").as_bytes());
                let out = secrets().scrub(&format!("Authorization: Basic {blob}"));
                assert!(out.contains(REDACTED), "{prefix:?}: {out}");
                // What is left cannot decode back to the secret.
                let left: String = out.replace(REDACTED, "");
                assert!(!left.contains(&blob), "{out}");
            }
        }
    }

    #[test]
    fn debug_never_shows_a_value() {
        let shown = format!("{:?}", secrets());
        assert!(!shown.contains("plain-token"), "{shown}");
        assert!(shown.starts_with("Secrets(2 values"), "{shown}");
    }

    /// A text without any secret is what almost every call scrubs: it must stay cheap. Measured
    /// on the 2-core VM in a release build: about 30 ns for a 149-byte message against 2 secrets
    /// (15 forms). `cargo test --release --lib scrub_speed -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement"]
    fn scrub_speed() {
        let s = secrets();
        let text = "DELETE https://acme.eu.auth0.com/api/v2/users/auth0%7C5f7c/identities/github/1234 : {\"statusCode\":404,\"error\":\"Not Found\",\"message\":\"user not found\"}";
        let n = 200_000;
        let start = std::time::Instant::now();
        let mut total = 0;
        for _ in 0..n {
            total += s.scrub(text).len();
        }
        let took = start.elapsed();
        assert!(total > 0);
        eprintln!(
            "{:?}: {:.0} ns per scrub of {} bytes",
            s,
            took.as_nanos() as f64 / n as f64,
            text.len()
        );
    }
}
