//! The kstreams DSL: `StreamsBuilder`, `KStream`, `KTable` and their operators.
