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
        pub mod ml {
            pub mod v1 {
                tonic::include_proto!("hospital.ml.v1");
            }
        }
    }
    pub mod inference {
        tonic::include_proto!("inference");
    }
}

pub use generated::hospital::{
    batch::v1 as batch, events::v1 as events, ingest::v1 as ingest, ml::v1 as ml, realtime::v1 as realtime,
};
/// The Open Inference Protocol v2 (KServe's `grpc_predict_v2.proto`, package `inference`)
/// with Triton's streaming extension `ModelStreamInfer`.
pub use generated::inference;

/// Encoded `FileDescriptorSet` of every hospital package, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("hospital_descriptor");

/// Encoded `FileDescriptorSet` of the `inference` package, for server reflection in the
/// process that serves `inference.GRPCInferenceService`. Kept apart from
/// [`FILE_DESCRIPTOR_SET`] so that the platform, which registers that one, does not
/// advertise a service it does not serve.
pub const INFERENCE_FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("inference_descriptor");

/// Encoded `FileDescriptorSet` of `hospital.ml.v1` (and the event types it uses), for
/// server reflection in the ML sidecar.
pub const ML_FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ml_descriptor");

impl events::clinical_event::Payload {
    /// The payload case's name, as stored in `staging.events.kind` and used by filters.
    pub fn kind(&self) -> &'static str {
        use events::clinical_event::Payload::*;
        match self {
            PatientRegistered(_) => "patient_registered",
            PatientUpdated(_) => "patient_updated",
            Admission(_) => "admission",
            Transfer(_) => "transfer",
            Discharge(_) => "discharge",
            EdArrival(_) => "ed_arrival",
            EdTriage(_) => "ed_triage",
            VitalSigns(_) => "vital_signs",
            LabResult(_) => "lab_result",
            MedicationOrder(_) => "medication_order",
            MedicationDispense(_) => "medication_dispense",
            MedicationAdministration(_) => "medication_administration",
            BedStatus(_) => "bed_status",
            ChargeLine(_) => "charge_line",
            ReferenceData(_) => "reference_data",
            Diagnosis(_) => "diagnosis",
            Procedure(_) => "procedure",
            RiskScore(_) => "risk_score",
        }
    }
}

/// Every value of [`events::clinical_event::Payload::kind`].
pub const EVENT_KINDS: &[&str] = &[
    "patient_registered",
    "patient_updated",
    "admission",
    "transfer",
    "discharge",
    "ed_arrival",
    "ed_triage",
    "vital_signs",
    "lab_result",
    "medication_order",
    "medication_dispense",
    "medication_administration",
    "bed_status",
    "charge_line",
    "reference_data",
    "diagnosis",
    "procedure",
    "risk_score",
];

#[cfg(test)]
mod tests {
    use super::events::{clinical_event::Payload, ClinicalEvent};
    use prost::Message;

    /// Every payload case, by its field number: decoding an empty message of each case
    /// gives each variant once.
    fn every_payload() -> Vec<Payload> {
        let descriptor = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let envelope = descriptor
            .file
            .iter()
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == "ClinicalEvent")
            .unwrap();
        envelope
            .field
            .iter()
            .filter(|f| f.oneof_index.is_some() && !f.proto3_optional())
            .map(|f| {
                // Field key (number, wire type 2) and a zero length: an empty message.
                let key = (f.number() as u64) << 3 | 2;
                let mut bytes = Vec::new();
                prost::encoding::encode_varint(key, &mut bytes);
                bytes.push(0);
                ClinicalEvent::decode(bytes.as_slice()).unwrap().payload.unwrap()
            })
            .collect()
    }

    #[test]
    fn event_kinds_list_every_payload_case_once() {
        let kinds: Vec<&str> = every_payload().iter().map(Payload::kind).collect();
        assert_eq!(kinds, super::EVENT_KINDS, "EVENT_KINDS in field-number order");
    }
}
