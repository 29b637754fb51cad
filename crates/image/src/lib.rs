//! The image store: content store (blobs by digest), import/export, layer unpack
//! into snapshots. (Being written.)
