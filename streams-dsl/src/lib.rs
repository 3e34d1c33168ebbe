//! The kstreams DSL: [`StreamsBuilder`], [`KStream`], [`KTable`] and their operators, compiled
//! into a [`Topology`](streams_core::Topology) that runs in the test driver or on Kafka.
//!
//! ```
//! use streams_dsl::prelude::*;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream::<(), Option<String>>("lines", Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())))
//!     .flat_map_values(|line| {
//!         line.unwrap_or_default().split_whitespace().map(str::to_lowercase).collect::<Vec<_>>()
//!     })
//!     .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
//!     .count(Materialized::as_("counts"))
//!     .to_stream()
//!     .to("word-counts", Produced::with(Serdes::string(), Serdes::option(Serdes::i64())));
//! let topology = builder.build().unwrap();
//! assert_eq!(topology.subtopologies().len(), 2, "split at the repartition topic");
//! ```

mod aggregate;
mod builder;
pub mod change;
pub mod cogroup;
pub mod foreign_key_join;
#[cfg(test)]
mod fuzz;
pub mod global_table;
mod graph;
mod grouped;
mod map_filter;
pub mod options;
mod stream;
pub mod stream_join;
pub mod suppress;
mod table;
pub mod table_join;
mod window_aggregate;
pub mod windowed;
mod windows;

pub use builder::{StreamsBuilder, Topics};
pub use change::{Change, ValueAndTimestamp};
pub use cogroup::CogroupedKStream;
pub use global_table::GlobalKTable;
pub use grouped::{KGroupedStream, KGroupedTable};
pub use options::{
    Consumed, Grouped, Joined, Materialized, Named, Produced, Repartitioned, StreamJoined,
    TableJoined,
};
pub use stream::{Branched, BranchedKStream, KStream};
pub use suppress::{BufferConfig, Suppressed};
pub use table::KTable;
pub use window_aggregate::EmitStrategy;
pub use windowed::{SessionWindowedKStream, TimeWindowedKStream, WindowedBy};
pub use windows::{
    JoinWindows, SessionWindowedSerde, SessionWindows, SlidingWindows, TimeWindowedSerde,
    TimeWindows, Window, Windowed, WindowedSerdes,
};

/// What keys and values must be: cloneable (a record can feed several operators), sendable
/// between threads, and owned.
pub trait Data: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> Data for T {}

/// The names a DSL application needs.
pub mod prelude {
    pub use crate::{
        Branched, BufferConfig, Change, CogroupedKStream, Consumed, EmitStrategy, GlobalKTable,
        Grouped, JoinWindows, Joined, KGroupedStream, KGroupedTable, KStream, KTable, Materialized,
        Named, Produced, Repartitioned, SessionWindows, SlidingWindows, StreamJoined,
        StreamsBuilder, Suppressed, TableJoined, TimeWindows, Window, Windowed, WindowedSerdes,
    };
    pub use state_stores::serdes::{Serde, Serdes};
    pub use streams_core::topology::Stores;
    pub use streams_core::{StreamsConfig, Topology, TopologyTestDriver};
}
