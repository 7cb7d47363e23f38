//! `annals-projectors`: turns the log into read views. Empty until issue 4 lands the projector
//! runtime, the `messages` and `audit` projections and the `ViewStore` backends; it exists now so
//! the workspace has its final shape and the dependency rules in ARCHITECTURE.md can be checked.
