//! Generated protobuf and gRPC code for the hospital data platform.
//!
//! Every other crate uses these types through this crate; nothing else runs protoc.
//! Packages follow buf style: `hospital.<area>.v1`.

#[allow(clippy::all, missing_docs)]
mod generated {
    pub mod hospital {
        pub mod events {
            pub mod v1 {
                tonic::include_proto!("hospital.events.v1");
            }
        }
        pub mod ingest {
            pub mod v1 {
                tonic::include_proto!("hospital.ingest.v1");
            }
        }
        pub mod batch {
            pub mod v1 {
                tonic::include_proto!("hospital.batch.v1");
            }
        }
        pub mod realtime {
            pub mod v1 {
                tonic::include_proto!("hospital.realtime.v1");
            }
        }
    }
}

pub use generated::hospital::{
    batch::v1 as batch, events::v1 as events, ingest::v1 as ingest, realtime::v1 as realtime,
};

/// Encoded `FileDescriptorSet` of every hospital package, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("hospital_descriptor");
