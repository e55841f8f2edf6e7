//! Feeds arbitrary bytes to the egg importer; anything it accepts must export and re-import.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_eggs::export::{ExportFormat, export_egg};
use nexus_eggs::import::import_egg;

fuzz_target!(|data: &[u8]| {
    if let Ok(egg) = import_egg(data) {
        for format in [ExportFormat::PtdlV2, ExportFormat::PlcnV3Yaml] {
            let text = export_egg(&egg, format).expect("an imported egg always exports");
            import_egg(text.as_bytes()).expect("an exported egg always re-imports");
        }
    }
});
