//! COM1: vm-superio's 8250 UART on the port-I/O bus.
//!
//! Output goes to any writer (stdout or a file). Input is pushed by the
//! VMM's event loop with [`Serial::enqueue`]; when the guest has drained the
//! receive FIFO, `input_ready` is signalled so the loop reads more, which is
//! how a pasted burst larger than the 64-byte FIFO is not lost.

use std::io::{self, Write};

use log::warn;
use vm_superio::serial::SerialEvents;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;
use crate::interrupt::IrqLine;

/// COM1's base port.
pub const COM1_PORT: u64 = 0x3f8;
/// COM1's ISA IRQ.
pub const COM1_IRQ: u32 = 4;
/// Ports per UART.
pub const UART_LEN: u64 = 8;

/// Signals the event loop when the guest emptied the receive FIFO.
pub struct InputReady(pub EventFd);

impl SerialEvents for InputReady {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        if let Err(e) = self.0.write(1) {
            warn!("serial: cannot signal input space: {e}");
        }
    }
}

/// An 8250 UART.
pub struct Serial {
    uart: vm_superio::Serial<IrqLine, InputReady, Box<dyn Write + Send>>,
}

impl Serial {
    /// A UART raising `irq` and writing the guest's output to `out`.
    pub fn new(irq: IrqLine, input_ready: InputReady, out: Box<dyn Write + Send>) -> Self {
        Serial {
            uart: vm_superio::Serial::with_events(irq, input_ready, out),
        }
    }

    /// Free space in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queues bytes typed by the user; returns how many fit.
    pub fn enqueue(&mut self, input: &[u8]) -> io::Result<usize> {
        let n = input.len().min(self.uart.fifo_capacity());
        self.uart
            .enqueue_raw_bytes(&input[..n])
            .map_err(|e| io::Error::other(format!("{e:?}")))
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&value), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.uart.write(off, value) {
                warn!("serial: write to port offset {off}: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn serial() -> (Serial, Sink, EventFd, EventFd) {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let ready = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let sink = Sink::default();
        let s = Serial::new(
            IrqLine(irq.try_clone().unwrap()),
            InputReady(ready.try_clone().unwrap()),
            Box::new(sink.clone()),
        );
        (s, sink, irq, ready)
    }

    #[test]
    fn output_reaches_the_writer() {
        let (mut s, sink, _, _) = serial();
        for &b in b"hi\n" {
            s.write(0, &[b]);
        }
        assert_eq!(*sink.0.lock().unwrap(), b"hi\n");
    }

    #[test]
    fn input_is_bounded_by_the_fifo_and_signals_when_drained() {
        let (mut s, _, irq, ready) = serial();
        s.write(1, &[1]); // IER: received-data interrupt
        let big = [b'x'; 100];
        let n = s.enqueue(&big).unwrap();
        assert_eq!(n, 64);
        assert_eq!(s.input_capacity(), 0);
        assert_eq!(s.enqueue(&big).unwrap(), 0);
        assert!(irq.read().unwrap() >= 1);
        let mut b = [0u8];
        for _ in 0..64 {
            s.read(0, &mut b);
            assert_eq!(b[0], b'x');
        }
        assert!(ready.read().unwrap() >= 1);
        assert_eq!(s.input_capacity(), 64);
    }

    #[test]
    fn odd_accesses_do_not_panic() {
        let (mut s, _, _, _) = serial();
        s.write(300, &[1]);
        s.write(0, &[]);
        let mut empty = [];
        s.read(0, &mut empty);
        let mut b = [0u8; 4];
        s.read(5, &mut b);
    }
}
