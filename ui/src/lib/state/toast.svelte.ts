// A short confirmation after a save ("Gemt"), announced politely to screen readers.
export class Toast {
  message = $state<string | null>(null);
  #timer: ReturnType<typeof setTimeout> | undefined;

  show(message: string, ms = 4000) {
    this.message = message;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => (this.message = null), ms);
  }

  clear() {
    clearTimeout(this.#timer);
    this.message = null;
  }
}

export const toast = new Toast();
