//! `[model.init]`: the pretrained weights a model starts from instead of its random
//! initialisation (ARL_SPEC.md §1.8: CLIP ViT-B/16 and RoBERTa-base, or METER's weights). Each
//! is a safetensors file; `scripts/convert_weights.py` makes one from the common downloads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The files a model starts from, and their hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInit {
    /// The whole model under METER's or ARL's names (told apart by the keys); loaded first, so
    /// that `vision` and `text` replace its towers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole: Option<PathBuf>,
    /// The vision tower: a Hugging Face `CLIPVisionModel` or an OpenAI CLIP state dict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<PathBuf>,
    /// The text tower: a Hugging Face `RobertaModel` or `BertModel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<PathBuf>,
    /// The sha256 of each file by its key (`whole`, `vision`, `text`). The launcher fills it in
    /// when it checks the config; a hash written in the config pins the file's content.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
}

impl ModelInit {
    /// The files by key, in loading order (`whole`, `vision`, `text`), those set.
    pub fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        [
            ("whole", &self.whole),
            ("vision", &self.vision),
            ("text", &self.text),
        ]
        .into_iter()
        .filter_map(|(key, path)| path.as_ref().map(|path| (key, path)))
        .collect()
    }

    /// Whether no file is set: the model starts from its random initialisation.
    pub fn is_empty(&self) -> bool {
        self.files().is_empty()
    }
}
