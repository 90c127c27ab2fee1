//! Shared by the bench binaries: the channel-pool baseline.

use std::thread::JoinHandle;

use crossbeam_channel::Sender;

type Task = Box<dyn FnOnce() + Send>;

/// The simplest pool there is: `threads` threads receiving boxed closures from one
/// unbounded crossbeam channel.
pub(crate) struct ChannelPool {
    sender: Option<Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

impl ChannelPool {
    pub(crate) fn new(threads: usize) -> Self {
        let (sender, receiver) = crossbeam_channel::unbounded::<Task>();
        let threads = (0..threads)
            .map(|index| {
                let receiver = receiver.clone();
                std::thread::Builder::new()
                    .name(format!("chanpool-{index}"))
                    .spawn(move || {
                        for task in receiver {
                            task();
                        }
                    })
                    .expect("spawn a channel-pool thread")
            })
            .collect();
        ChannelPool {
            sender: Some(sender),
            threads,
        }
    }

    pub(crate) fn spawn(&self, task: impl FnOnce() + Send + 'static) {
        if let Some(sender) = &self.sender {
            sender.send(Box::new(task)).expect("channel pool alive");
        }
    }
}

impl Drop for ChannelPool {
    fn drop(&mut self) {
        self.sender = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
