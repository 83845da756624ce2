//! Build 1 of the test plugin `reload`, for the hot reload test (`run --watch`): the
//! two builds differ only in their version and in the `build` field of their items.

const BUILD: u32 = 1;

include!("../../reload-common/plugin.rs");
