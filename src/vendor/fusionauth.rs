//! FusionAuth adapter (stub: being written).

use url::Url;

use super::{
    Adapter, ConfigError, Invalid, Pacing, Prepared, VendorDoc, VendorKind, Verdict, WireAnswer,
    WireRequest,
};
use crate::input::Fields;

pub const PACING: Pacing = Pacing {
    rate: 50.0,
    burst: 50,
    concurrency: 16,
};

pub const DOC: VendorDoc = VendorDoc {
    kind: VendorKind::FusionAuth,
    title: "FusionAuth (not built yet)",
    fields: &[],
    key: "",
    config: &[],
    read_api: false,
};

#[derive(Debug)]
pub struct FusionAuth;

impl FusionAuth {
    pub fn from_config(
        _table: toml::Table,
        _base_url: Option<Url>,
    ) -> Result<(Self, Url), ConfigError> {
        Err(ConfigError::new(
            "type",
            "the fusionauth adapter is not built yet",
        ))
    }
}

impl Adapter for FusionAuth {
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
