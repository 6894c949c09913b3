//! A VM's passthrough devices on the host side: [`plan::check`] runs every
//! check and returns a [`plan::Plan`]; only [`plan::Plan::apply`] changes
//! the host (VF settings through the PF, `managed` rebinding), returning a
//! [`plan::Guard`] that gives the device back when dropped. Everything it
//! reads and writes on the host goes through [`crate::host`].

pub mod plan;
