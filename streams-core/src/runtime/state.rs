//! The application's state, derived from its stream threads, with a listener and a watch
//! channel for async code.
//!
//! ```text
//! Created ──start──▶ Rebalancing ◀──▶ Running
//!    │                    │               │
//!    └──────close─────────┴──▶ PendingShutdown ──▶ NotRunning
//! a thread fails ──▶ PendingError ──▶ Error ──close──▶ (stays Error)
//! ```
//!
//! Running means every stream thread has its assignment and every task has restored; during a
//! rebalance or a restoration the state is Rebalancing.

use std::sync::{Arc, Mutex};

use crate::error::StreamsError;

/// The state of a [`KafkaStreams`](crate::runtime::KafkaStreams) instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Built, not started.
    Created,
    /// Joining the group, taking over tasks or restoring their state.
    Rebalancing,
    /// Every thread is processing.
    Running,
    /// Closing: threads finish, commit and leave the group.
    PendingShutdown,
    /// Closed.
    NotRunning,
    /// A thread failed; the others are stopping.
    PendingError,
    /// Stopped because of an error; see [`KafkaStreams::error`](crate::runtime::KafkaStreams::error).
    Error,
}

impl State {
    fn can_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Created, Rebalancing | PendingShutdown | PendingError)
                | (Rebalancing, Running | PendingShutdown | PendingError)
                | (Running, Rebalancing | PendingShutdown | PendingError)
                | (PendingShutdown, NotRunning)
                | (PendingError, Error)
        )
    }

    /// Whether the instance is started and not shutting down.
    pub fn is_running_or_rebalancing(self) -> bool {
        matches!(self, State::Running | State::Rebalancing)
    }
}

/// Called with `(new, old)` on every state change.
pub type StateListener = Arc<dyn Fn(State, State) + Send + Sync>;

/// What a stream thread reports of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadState {
    Starting,
    /// Waiting for assignment, creating tasks, or restoring.
    Rebalancing,
    Running,
    Dead,
}

struct Inner {
    state: State,
    threads: Vec<ThreadState>,
    error: Option<Arc<StreamsError>>,
    listener: Option<StateListener>,
}

/// The shared state of one instance.
pub(crate) struct StateCell {
    inner: Mutex<Inner>,
    watch: tokio::sync::watch::Sender<State>,
}

impl StateCell {
    pub(crate) fn new() -> Self {
        let (watch, _) = tokio::sync::watch::channel(State::Created);
        StateCell {
            inner: Mutex::new(Inner {
                state: State::Created,
                threads: Vec::new(),
                error: None,
                listener: None,
            }),
            watch,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self) -> State {
        self.lock().state
    }

    pub(crate) fn error(&self) -> Option<Arc<StreamsError>> {
        self.lock().error.clone()
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<State> {
        self.watch.subscribe()
    }

    pub(crate) fn set_listener(&self, listener: StateListener) {
        self.lock().listener = Some(listener);
    }

    /// Moves to `next` if allowed; returns whether it did. The listener runs outside the lock.
    pub(crate) fn transition(&self, next: State) -> bool {
        let (old, listener) = {
            let mut inner = self.lock();
            let old = inner.state;
            if old == next || !old.can_become(next) {
                return false;
            }
            inner.state = next;
            (old, inner.listener.clone())
        };
        tracing::info!(from = ?old, to = ?next, "state transition");
        self.watch.send_replace(next);
        if let Some(listener) = listener {
            listener(next, old);
        }
        true
    }

    pub(crate) fn set_threads(&self, count: usize) {
        self.lock().threads = vec![ThreadState::Starting; count];
    }

    /// A thread reports its state; the instance's state follows.
    pub(crate) fn thread(&self, index: usize, state: ThreadState) {
        let next = {
            let mut inner = self.lock();
            if let Some(slot) = inner.threads.get_mut(index) {
                *slot = state;
            }
            if !inner.state.is_running_or_rebalancing() {
                return;
            }
            let live: Vec<ThreadState> = inner
                .threads
                .iter()
                .copied()
                .filter(|t| *t != ThreadState::Dead)
                .collect();
            if !live.is_empty() && live.iter().all(|t| *t == ThreadState::Running) {
                State::Running
            } else {
                State::Rebalancing
            }
        };
        self.transition(next);
    }

    /// A thread failed: keep the first error and move towards Error.
    pub(crate) fn fail(&self, error: StreamsError) {
        {
            let mut inner = self.lock();
            if inner.error.is_none() {
                inner.error = Some(Arc::new(error));
            }
        }
        self.transition(State::PendingError);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_threads_and_the_listener_hears_it() {
        let cell = StateCell::new();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        cell.set_listener(Arc::new(move |new, old| h.lock().unwrap().push((old, new))));
        cell.set_threads(2);
        assert!(cell.transition(State::Rebalancing));
        cell.thread(0, ThreadState::Running);
        assert_eq!(
            cell.get(),
            State::Rebalancing,
            "one thread is not running yet"
        );
        cell.thread(1, ThreadState::Running);
        assert_eq!(cell.get(), State::Running);
        cell.thread(1, ThreadState::Rebalancing);
        assert_eq!(cell.get(), State::Rebalancing);
        cell.fail(StreamsError::Fatal("boom".into()));
        assert_eq!(cell.get(), State::PendingError);
        assert!(
            !cell.transition(State::Running),
            "no way back from an error"
        );
        assert!(cell.transition(State::Error));
        assert_eq!(
            cell.error().map(|e| e.to_string()),
            Some("fatal: boom".into())
        );
        assert_eq!(
            *heard.lock().unwrap(),
            vec![
                (State::Created, State::Rebalancing),
                (State::Rebalancing, State::Running),
                (State::Running, State::Rebalancing),
                (State::Rebalancing, State::PendingError),
                (State::PendingError, State::Error),
            ]
        );
    }
}
