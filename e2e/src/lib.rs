//! End-to-end test bed (built in a later issue).
