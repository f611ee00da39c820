//! Helpers for tests across processes and network namespaces.
