//! The real-time stage: work on committed events as they arrive, rather than in batch.
//!
//! [`bus`] fans out each committed flush in process; [`follow`] reads staging in position
//! order with no gap and no repeat; [`changefeed`] delivers those events to subscribers.
//! [`news2`] is pure scoring for alerting (the National Early Warning Score 2, RCP 2017):
//! no I/O, no state, called with each patient's latest vital signs.

pub mod alerts;
pub mod bus;
pub mod census;
pub mod changefeed;
pub mod follow;
pub mod news2;
pub mod processor;
