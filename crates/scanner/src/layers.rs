//! A merged, read-only view of an image's layers, resolved the way
//! overlayfs would: an upper layer's file hides a lower one's, whiteouts
//! delete, opaque directories hide everything below them.
//!
//! (Owned by the inventory work; see its module docs once written.)
