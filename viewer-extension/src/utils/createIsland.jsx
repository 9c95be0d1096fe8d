import React from 'react';
import { createRoot } from 'react-dom/client';

/**
 * Wraps `render()` (which returns an element of this bundle's React) as a component that the host OHIF's
 * React can mount. The extension ships its own React 18 (the prebuilt OHIF does not expose its copy), and
 * hooks only work under the renderer of the same copy, so the panel runs in its own React root inside a
 * host element. The host is a class component without hooks: class components and plain elements are
 * understood by any React 18 renderer.
 */
export default function createIsland(render, { displayName = 'CbmirIsland' } = {}) {
  class Island extends React.Component {
    constructor(props) {
      super(props);
      this._root = null;
      this._element = null;
      this._setElement = element => {
        this._element = element;
      };
    }

    componentDidMount() {
      this._root = createRoot(this._element);
      this._root.render(render(this.props));
    }

    componentDidUpdate() {
      this._root?.render(render(this.props));
    }

    componentWillUnmount() {
      const root = this._root;
      this._root = null;
      // Not inside the host's commit: unmounting another root synchronously there makes React warn.
      setTimeout(() => root?.unmount(), 0);
    }

    render() {
      return React.createElement('div', { ref: this._setElement, className: 'cbmir-island', style: { height: '100%' } });
    }
  }
  Island.displayName = displayName;
  return Island;
}
