//! `unlinker vendors`: every adapter's row fields, key and config keys with their defaults.

use std::io::Write;

use crate::adapter::VendorKind;
use crate::summary::exit;

pub(super) fn vendors() -> i32 {
    let mut out = String::new();
    for kind in VendorKind::all() {
        let doc = kind.doc();
        let p = kind.pacing();
        out.push_str(&format!("{} — {}\n", kind.name(), doc.title));
        out.push_str("  row fields:\n");
        for f in doc.fields {
            let req = if f.required { "required" } else { "optional" };
            out.push_str(&format!("    {:<28} {req:<9} {}\n", f.name, f.rule));
        }
        out.push_str(&format!("  key: {}\n", doc.key));
        out.push_str("  config keys:\n");
        // Once: some vendors' own docs list it already (with what it defaults to).
        if !doc.config.iter().any(|c| c.name == "base_url") {
            out.push_str(&format!(
                "    {:<28} {:<26} {}\n",
                "base_url", "", "override the vendor host (https, or http on loopback)"
            ));
        }
        out.push_str(&format!(
            "    {:<28} {:<26} {}\n",
            "rate",
            format!("default {}", p.rate),
            "requests per second"
        ));
        out.push_str(&format!(
            "    {:<28} {:<26} {}\n",
            "burst",
            format!("default {}", p.burst),
            "token-bucket burst"
        ));
        out.push_str(&format!(
            "    {:<28} {:<26} {}\n",
            "concurrency",
            format!("default {}", p.concurrency),
            "requests in flight"
        ));
        out.push_str(&format!(
            "    {:<28} {:<26} {}\n",
            "reserve", "default 0", "share of the vendor's announced limit left to others"
        ));
        for c in doc.config {
            let default = if c.default.is_empty() {
                String::new()
            } else {
                format!("default {}", c.default)
            };
            out.push_str(&format!("    {:<28} {default:<26} {}\n", c.name, c.about));
        }
        out.push_str(&format!(
            "  read API (in-doubt rows, --check): {}\n\n",
            if doc.read_api { "yes" } else { "no" }
        ));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    exit::OK
}
