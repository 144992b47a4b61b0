//! Gigya adapter (stub: being written).

use url::Url;

use super::{
    Adapter, ConfigError, Invalid, Pacing, Prepared, VendorDoc, VendorKind, Verdict, WireAnswer,
    WireRequest,
};
use crate::input::Fields;

pub const PACING: Pacing = Pacing {
    rate: 10.0,
    burst: 10,
    concurrency: 8,
};

pub const DOC: VendorDoc = VendorDoc {
    kind: VendorKind::Gigya,
    title: "Gigya (not built yet)",
    fields: &[],
    key: "",
    config: &[],
    read_api: false,
};

#[derive(Debug)]
pub struct Gigya;

impl Gigya {
    pub fn from_config(
        _table: toml::Table,
        _base_url: Option<Url>,
    ) -> Result<(Self, Url), ConfigError> {
        Err(ConfigError::new(
            "type",
            "the gigya adapter is not built yet",
        ))
    }
}

impl Adapter for Gigya {
    fn prepare(&self, _fields: &Fields) -> Result<Prepared, Invalid> {
        unimplemented!()
    }
    fn build(&self, _row: &Prepared, _step: u8, _token: Option<&str>) -> WireRequest {
        unimplemented!()
    }
    fn classify(&self, _row: &Prepared, _step: u8, _answer: &WireAnswer) -> Verdict {
        unimplemented!()
    }
}
