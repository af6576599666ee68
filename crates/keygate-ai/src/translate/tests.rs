//! Translation across formats: round trips, sealed signatures, estimated usage.
