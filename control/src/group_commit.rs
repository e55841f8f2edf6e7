//! Group commit: many callers, few transactions.
//!
//! A thousand nodes each sending a heartbeat a second, plus their servers' lifecycle events,
//! are thousands of tiny writes a second; one transaction each spends the store's time on
//! `BEGIN` and `COMMIT` and exhausts the connection pool. Here each caller hands in one item
//! and waits for its own outcome; a worker task takes everything queued (up to a batch) and
//! writes it in one store call, and the callers that arrive meanwhile form the next batch. An
//! idle queue costs nothing (a lone caller is a batch of one, written at once); under load the
//! batches grow by themselves, with no timer adding latency.
//!
//! A caller that gives up (its HTTP request dropped) does not cancel the write: the worker
//! runs on its own task. The queue is bounded: past [`GroupCommit::MAX_QUEUED`] items a
//! caller is refused at once ([`Refused::Full`]) rather than waiting behind a backlog.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Writes one batch: one outcome per item, in order (a missing outcome fails its caller).
pub(crate) type Flush<I, O> = Arc<dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Vec<O>> + Send>> + Send + Sync>;

/// Why an item got no outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue holds [`GroupCommit::MAX_QUEUED`] items already.
    Full,
    /// The batch's write ended without an outcome for it (it panicked).
    Lost,
}

struct Queue<I, O> {
    waiting: Vec<(I, oneshot::Sender<O>)>,
    /// Workers writing a batch now.
    running: usize,
}

/// A queue of items written in batches by at most `workers` concurrent store calls.
pub(crate) struct GroupCommit<I, O> {
    queue: Mutex<Queue<I, O>>,
    flush: Flush<I, O>,
    batch: usize,
    workers: usize,
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// Items waiting at most; past this, callers are refused (the sender retries later).
    pub(crate) const MAX_QUEUED: usize = 20_000;

    /// Batches of at most `batch` items, written by `flush`, `workers` at a time.
    pub(crate) fn new(batch: usize, workers: usize, flush: Flush<I, O>) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Queue { waiting: Vec::new(), running: 0 }),
            flush,
            batch: batch.max(1),
            workers: workers.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<I, O>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` and waits for its outcome.
    pub(crate) async fn submit(self: &Arc<Self>, item: I) -> Result<O, Refused> {
        let (sender, outcome) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            if queue.waiting.len() >= Self::MAX_QUEUED {
                return Err(Refused::Full);
            }
            queue.waiting.push((item, sender));
            let start = queue.running < self.workers;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            tokio::spawn(Arc::clone(self).work());
        }
        outcome.await.map_err(|_| Refused::Lost)
    }

    /// Writes batches until the queue is empty.
    async fn work(self: Arc<Self>) {
        loop {
            let batch: Vec<(I, oneshot::Sender<O>)> = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.running -= 1;
                    return;
                }
                let take = queue.waiting.len().min(self.batch);
                queue.waiting.drain(..take).collect()
            };
            let (items, senders): (Vec<I>, Vec<oneshot::Sender<O>>) = batch.into_iter().unzip();
            // On a task of its own, so that a panicking write fails its batch (the senders
            // are dropped) instead of this worker, which would leave `running` counted.
            let flush = Arc::clone(&self.flush);
            let written = tokio::spawn(async move { flush(items).await }).await;
            match written {
                Ok(outcomes) => {
                    for (sender, outcome) in senders.into_iter().zip(outcomes) {
                        // A caller that gave up is not waiting any more; nothing to tell it.
                        let _ = sender.send(outcome);
                    }
                }
                Err(e) => tracing::error!(error = %e, "a batched store write failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn counting(sizes: Arc<Mutex<Vec<usize>>>, delay: Duration) -> Flush<u32, u32> {
        Arc::new(move |items: Vec<u32>| {
            let sizes = Arc::clone(&sizes);
            Box::pin(async move {
                sizes.lock().unwrap().push(items.len());
                tokio::time::sleep(delay).await;
                items.into_iter().map(|i| i * 2).collect()
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_arriving_during_a_write_share_the_next_batch_and_get_their_own_outcomes() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = GroupCommit::new(64, 1, counting(Arc::clone(&sizes), Duration::from_millis(50)));
        let calls: Vec<_> = (0..200u32)
            .map(|i| {
                let group = Arc::clone(&group);
                tokio::spawn(async move { (i, group.submit(i).await) })
            })
            .collect();
        for call in calls {
            let (i, outcome) = call.await.unwrap();
            assert_eq!(outcome, Ok(i * 2));
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 200);
        assert!(sizes.iter().all(|&n| n <= 64), "{sizes:?}");
        // 200 callers within one 50 ms write: a handful of batches, not 200.
        assert!(sizes.len() <= 8, "{} batches: {sizes:?}", sizes.len());
    }

    #[tokio::test]
    async fn a_lone_caller_is_written_at_once() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = GroupCommit::new(64, 1, counting(Arc::clone(&sizes), Duration::ZERO));
        assert_eq!(group.submit(21).await, Ok(42));
        assert_eq!(group.submit(1).await, Ok(2));
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_fails_its_batch_and_the_queue_keeps_working() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let flush: Flush<u32, u32> = Arc::new(move |items: Vec<u32>| {
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                assert!(!first, "the first write panics");
                items
            })
        });
        let group = GroupCommit::new(8, 1, flush);
        assert_eq!(group.submit(1).await, Err(Refused::Lost));
        assert_eq!(group.submit(2).await, Ok(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_caller_is_still_written() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = GroupCommit::new(8, 1, counting(Arc::clone(&sizes), Duration::from_millis(20)));
        let abandoned = {
            let group = Arc::clone(&group);
            tokio::spawn(async move { group.submit(1).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        abandoned.abort();
        assert_eq!(group.submit(2).await, Ok(4));
        assert_eq!(sizes.lock().unwrap().iter().sum::<usize>(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let (release, gate) = tokio::sync::watch::channel(false);
        let flush: Flush<u32, u32> = Arc::new(move |items: Vec<u32>| {
            let mut gate = gate.clone();
            Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
                items
            })
        });
        let group = GroupCommit::new(1, 1, flush);
        let submit = |i: u32| {
            let group = Arc::clone(&group);
            tokio::spawn(async move { group.submit(i).await })
        };
        // One in the worker's (blocked) batch, then MAX_QUEUED behind it.
        let mut waiting = vec![submit(0)];
        while group.lock().running == 0 || !group.lock().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        for i in 1..=GroupCommit::<u32, u32>::MAX_QUEUED as u32 {
            waiting.push(submit(i));
        }
        while group.lock().waiting.len() < GroupCommit::<u32, u32>::MAX_QUEUED {
            tokio::task::yield_now().await;
        }
        assert_eq!(group.submit(u32::MAX).await, Err(Refused::Full));
        release.send(true).unwrap();
        for call in waiting {
            assert!(call.await.unwrap().is_ok());
        }
    }
}
