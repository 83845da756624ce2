//! The Lua scripts every change to a shared crawl goes through, each one atomic on the
//! server (one `EVALSHA`, loaded again after a Redis restart). It owns their text; the
//! keys they use are described in `common.lua`.

use redis::Script;

// The shebang (Redis 7) makes Redis check a script's flags before running it: with no
// `allow-oom` flag, a Redis out of memory refuses the whole script up front instead of
// failing halfway through it (scripts are atomic, but a failed command does not undo the
// ones before it).
macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            "#!lua\n",
            include_str!("common.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

pub(crate) struct Scripts {
    pub join: Script,
    pub add: Script,
    pub round: Script,
    pub release: Script,
    pub block: Script,
    pub heartbeat: Script,
    pub confirm: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            join: script!("join.lua"),
            add: script!("add.lua"),
            round: script!("round.lua"),
            release: script!("release.lua"),
            block: script!("block.lua"),
            heartbeat: script!("heartbeat.lua"),
            confirm: script!("confirm.lua"),
        }
    }
}
