//! The committed CRDs are generated: `zooherd crd` is their only source. This test fails when
//! the Rust types changed and the YAML under crds/ (and the chart's copy) was not regenerated.
//! Regenerate (both copies, and deploy/operator.yaml that includes them) with:
//!
//! ```sh
//! bash deploy/generate.sh
//! ```

use std::path::Path;
use std::process::Command;

#[test]
fn committed_crds_match_zooherd_crd() {
    let output = Command::new(env!("CARGO_BIN_EXE_zooherd"))
        .arg("crd")
        .output()
        .expect("running zooherd crd");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("zooherd crd prints UTF-8");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for committed in [
        "crds/zooherd.dev.yaml",
        "charts/zooherd/crds/zooherd.dev.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(committed))
            .unwrap_or_else(|e| panic!("reading {committed}: {e}"));
        assert!(
            text == generated,
            "{committed} differs from `zooherd crd`; regenerate it: bash deploy/generate.sh"
        );
    }
}
