//! Scenario tests of the invocation lifecycle over `MemoryStore`: each applies commands and
//! asserts the exact effects and the resulting state. One module per lifecycle step.

mod attempt_ended;
mod awakeables;
mod cancel;
mod completion;
mod invoke;
mod journal;
mod kill;
mod limits;
mod local;
mod observations;
mod pause;
mod policy;
mod promises;
mod properties;
mod purge;
mod retry;
mod scheduled;
mod schedules;
mod shuffle;
mod support;
mod timers;
mod workflows;
