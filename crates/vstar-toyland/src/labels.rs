//! Ground truth for a render.

use crate::context::{Accessory, ColorMod, Material, Scene, Style};
use crate::spec::SceneSpec;
use crate::superclass::Superclass;
use serde::{Deserialize, Serialize};

/// Everything an oracle can be asked about a render.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    pub superclass: Superclass,
    /// Set for named instances (ToyBooth subjects, polluted looks), `None` for generic ones.
    pub instance_id: Option<String>,
    pub scene: Scene,
    pub color: ColorMod,
    pub accessory: Accessory,
    pub material: Material,
    pub style: Style,
}

impl Labels {
    pub fn of(spec: &SceneSpec) -> Labels {
        let c = spec.context;
        Labels {
            superclass: spec.instance.superclass,
            instance_id: spec.instance.id.clone(),
            scene: c.scene,
            color: c.color,
            accessory: c.accessory,
            material: c.material,
            style: c.style,
        }
    }

    /// Whether the colour can be seen at all: the sketch style is grayscale, so an oracle's
    /// colour head should skip sketches (and a prompt should not ask for both).
    pub fn color_visible(&self) -> bool {
        self.style != Style::Sketch
    }
}
