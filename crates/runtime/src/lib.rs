//! Containers on this node.
