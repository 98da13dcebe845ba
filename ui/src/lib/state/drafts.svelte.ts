// Half-typed forms kept encrypted in the store (Rust: `App::save_draft`), so a tap on another
// menu item or the idle lock loses nothing: the form offers the draft again on return.
import { api } from '../api';
import type { DraftView } from '../bindings';

/** How long typing must pause before the draft is written. */
const QUIET_MS = 400;

export class DraftKeeper<T> {
  /** A draft kept from before, offered until the worker resumes or discards it. */
  offered = $state<DraftView | null>(null);
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pending: { content: T; citizen: string | null } | null = null;
  private pristine: string;

  /** `form` names the draft; `initial` is the form as it opens (never kept as a draft). */
  constructor(
    private form: string,
    initial: T,
  ) {
    this.pristine = JSON.stringify(initial);
  }

  /** The form as it opened, once loaded (an edit form loads the record after it is built):
   *  that is never kept as a draft. */
  baseline(initial: T) {
    this.pristine = JSON.stringify(initial);
  }

  /** Looks for a kept draft to offer. */
  async check() {
    try {
      this.offered = await api.draft(this.form);
    } catch {
      this.offered = null;
    }
  }

  /** The form changed: keep it once typing pauses (nothing while it is as it opened). */
  changed(content: T, citizen: string | null) {
    if (this.offered) return; // the older draft waits for the worker's answer first
    clearTimeout(this.timer);
    if (JSON.stringify(content) === this.pristine) return;
    this.pending = { content: JSON.parse(JSON.stringify(content)) as T, citizen };
    this.timer = setTimeout(() => void this.flush(), QUIET_MS);
  }

  /** Writes a pending change now (leaving the screen). */
  async flush() {
    clearTimeout(this.timer);
    const p = this.pending;
    this.pending = null;
    if (!p) return;
    try {
      await api.saveDraft(this.form, p.citizen, p.content);
    } catch {
      // Locked meanwhile, say: the draft is a convenience, never an error on screen.
    }
  }

  /** The worker takes the kept draft back into the form. */
  resume(): T | null {
    const d = this.offered;
    this.offered = null;
    return d ? (d.content as T) : null;
  }

  /** The form was saved, or the worker threw the draft away. */
  async discard() {
    clearTimeout(this.timer);
    this.pending = null;
    this.offered = null;
    try {
      await api.discardDraft(this.form);
    } catch {
      // Nothing to do: a draft that stays is offered again and can be discarded then.
    }
  }
}
