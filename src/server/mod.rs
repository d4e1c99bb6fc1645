//! The async shell facing clients. PLACEHOLDER: written next.
