//! The desktop entry point; mobile targets enter through `feltbog_app_lib::run` directly.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    feltbog_app_lib::run();
}
